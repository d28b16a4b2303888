"""A Live API conversation from Python, over wss://, against `localgem serve --tls`.

    SSL_CERT_FILE=<data dir>/tls/cert.pem GEMINI_API_KEY=<key> python examples/live_chat.py https://127.0.0.1:8080

The program is what it would be against Google; only the base URL differs (and the trust of the
self-signed certificate, which the banner of `localgem serve --tls` prints).
"""

import asyncio
import os
import sys

from google import genai
from google.genai import types


async def main(base_url: str) -> None:
    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options={"base_url": base_url})
    config = types.LiveConnectConfig(response_modalities=["TEXT"], max_output_tokens=40)
    async with client.aio.live.connect(model="gemini-live-2.5-flash-preview", config=config) as session:
        for question in ["Hello! Who are you?", "Tell me a fun fact about the sea."]:
            print(f"> {question}")
            await session.send_realtime_input(text=question)
            async for message in session.receive():  # until the model's turn is complete
                print(message.text or "", end="", flush=True)
            print()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "https://127.0.0.1:8080"))
