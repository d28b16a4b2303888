"""The web playground at ``/`` in a real browser: Debian's headless Chromium, driven by Selenium, against a
server on the real small model.

Without Chromium and chromedriver the test skips, unless ``LOCALGEM_REQUIRE_BROWSER=1`` (set by CI, which
installs them) makes that a failure. Screenshots go to ``.ci/logs/playground-*.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localgem.generation.tool_prompt import render_call
from tests.conftest import API_KEY, SMOLLM, start_fake_server, start_real_server
from tests.fakes import FakeEngine
from tests.images import text_image
from tests.server import RunningServer

try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    if os.environ.get("LOCALGEM_REQUIRE_BROWSER") == "1":
        raise
    pytest.skip("selenium is not installed (the test extra has it)", allow_module_level=True)

LOGS = Path(__file__).resolve().parents[2] / ".ci" / "logs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
# Records what the page sends (URL and JSON body of each fetch), for the assertions below.
RECORD_FETCHES = """
window.sent = [];
const original = window.fetch;
window.fetch = (url, init) => {
  window.sent.push({url: String(url), body: typeof init?.body === "string" ? init.body : null});
  return original(url, init);
};
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_real_server(tmp_path_factory.mktemp("data"), code_execution=False)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    if CHROMIUM is None or DRIVER is None:
        if os.environ.get("LOCALGEM_REQUIRE_BROWSER") == "1":
            pytest.fail("A browser is required (LOCALGEM_REQUIRE_BROWSER=1) but chromium/chromedriver were not found")
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(LOGS / f"playground-{name}.png"))


def answers(driver: webdriver.Chrome, count: int) -> list:
    """Waits until ``count`` model messages have finished streaming; returns them."""
    finished = (By.CSS_SELECTOR, ".message.model[data-state=done]")
    WebDriverWait(driver, 60).until(
        lambda d: len(d.find_elements(*finished)) >= count or d.find_element(By.ID, "error").text
    )
    assert driver.find_element(By.ID, "error").text == ""
    return driver.find_elements(*finished)


def send(driver: webdriver.Chrome, text: str) -> None:
    prompt = driver.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys(text)
    driver.find_element(By.ID, "send").click()


def sent_bodies(driver: webdriver.Chrome, fragment: str) -> list[dict]:
    return [json.loads(item["body"]) for item in driver.execute_script("return window.sent") if fragment in item["url"]]


def test_the_playground_in_a_browser(browser: webdriver.Chrome, server: RunningServer, tmp_path: Path) -> None:
    driver = browser
    # The page and its assets load without a key; the API still asks for one.
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(server.url + "/v1beta/models").status_code in (401, 403)

    driver.get(server.url + "/")
    assert driver.title == "localgem playground"
    driver.execute_script(RECORD_FETCHES)
    driver.find_element(By.ID, "api-key").send_keys(API_KEY)
    driver.find_element(By.ID, "save-key").click()
    WebDriverWait(driver, 30).until(
        lambda d: any(o.get_attribute("value") == SMOLLM for o in d.find_elements(By.CSS_SELECTOR, "#model option"))
    )
    assert driver.execute_script("return localStorage.getItem('localgem.apiKey')") == API_KEY
    Select(driver.find_element(By.ID, "model")).select_by_value(SMOLLM)
    driver.find_element(By.ID, "temperature").send_keys("0")
    driver.find_element(By.ID, "max-tokens").send_keys("24")
    driver.find_element(By.ID, "system").send_keys("You are a friendly assistant. Answer briefly.")

    # Chat, streamed: the answer arrives in several server-sent events, with its token counts.
    send(driver, "Say hello to Ada.")
    first = answers(driver, 1)[0]
    assert first.find_element(By.CSS_SELECTOR, ".text").text.strip()
    assert int(first.get_attribute("data-chunks")) > 1
    usage = first.find_element(By.CSS_SELECTOR, ".usage").text
    assert "Tokens: prompt" in usage and "countTokens said" in usage
    body = sent_bodies(driver, ":streamGenerateContent?alt=sse")[0]
    assert body["generationConfig"] == {"temperature": 0, "maxOutputTokens": 24}
    assert body["systemInstruction"]["parts"][0]["text"].startswith("You are a friendly")
    assert sent_bodies(driver, ":countTokens")
    screenshot(driver, "1-chat")

    # A file, uploaded through the Files API (resumable), then asked about as a fileData part.
    note = tmp_path / "note.txt"
    note.write_text("The secret word is PAPAYA. It is a fruit.\n")
    driver.find_element(By.ID, "file").send_keys(str(note))
    chip = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".chip.attachment")))
    uri = chip.get_attribute("data-uri")
    assert "/files/" in uri and "note.txt" in chip.text
    send(driver, "What is the secret word in the file?")
    second = answers(driver, 2)[1]
    assert second.find_element(By.CSS_SELECTOR, ".text").text.strip()
    body = sent_bodies(driver, ":streamGenerateContent?alt=sse")[1]
    asked = body["contents"][-1]
    assert {"fileData": {"fileUri": uri, "mimeType": "text/plain"}} in asked["parts"]
    assert len(body["contents"]) == 3  # the first exchange, then this question
    screenshot(driver, "2-file")

    # JSON mode with a schema: first "Get code" for what is on screen, which runs as it is; then the answer.
    driver.find_element(By.ID, "clear").click()
    driver.find_element(By.ID, "json-mode").click()
    schema = {
        "type": "object",
        "properties": {"animal": {"type": "string", "maxLength": 12}, "legs": {"type": "integer"}},
        "required": ["animal", "legs"],
    }
    driver.find_element(By.ID, "schema").send_keys(json.dumps(schema))
    driver.find_element(By.ID, "max-tokens").clear()
    driver.find_element(By.ID, "max-tokens").send_keys("40")
    driver.find_element(By.ID, "prompt").send_keys("Name an animal and how many legs it has.")
    counted = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "token-count").text)
    assert counted.endswith("tokens in the prompt") and int(counted.split()[0]) > 10
    driver.find_element(By.ID, "get-code").click()
    WebDriverWait(driver, 10).until(ec.visibility_of_element_located((By.ID, "code-panel")))
    curl = driver.find_element(By.ID, "code-curl").text
    python = driver.find_element(By.ID, "code-python").text
    assert curl.startswith(f'curl "{server.url}/v1beta/models/{SMOLLM}:streamGenerateContent?alt=sse"')
    assert "x-goog-api-key: $GEMINI_API_KEY" in curl and '"responseJsonSchema"' in curl
    assert "from google import genai" in python and "generate_content_stream(" in python
    assert "response_json_schema=" in python and 'response_mime_type="application/json"' in python
    screenshot(driver, "3-code")
    environment = {**os.environ, "GEMINI_API_KEY": API_KEY}
    ran = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60, env=environment)
    assert ran.returncode == 0, ran.stderr
    assert isinstance(json.loads(ran.stdout)["legs"], int)
    ran = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, env=environment)
    assert ran.returncode == 0 and ran.stdout.startswith("data: {"), ran.stdout + ran.stderr

    driver.find_element(By.ID, "close-code").click()
    driver.find_element(By.ID, "send").click()
    reply = answers(driver, 1)[0]
    data = json.loads(reply.find_element(By.CSS_SELECTOR, ".text").text)
    assert set(data) == {"animal", "legs"} and isinstance(data["legs"], int)
    config = sent_bodies(driver, ":streamGenerateContent?alt=sse")[-1]["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == schema
    screenshot(driver, "4-json")


def test_a_function_call_answered_in_the_playground(browser: webdriver.Chrome, tmp_path: Path) -> None:
    """Function declarations typed as JSON; the model's call shown with a place to type its result, which goes
    back as a functionResponse part. A scripted fake model makes the call (the small real one rarely does)."""
    engine = FakeEngine(script=[render_call("get_weather", {"city": "Paris"}), "It is sunny in Paris."])
    server = start_fake_server(tmp_path, engine)
    try:
        driver = browser
        driver.get(server.url + "/")
        driver.execute_script("localStorage.setItem('localgem.apiKey', arguments[0])", API_KEY)
        driver.refresh()
        driver.execute_script(RECORD_FETCHES)
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#model option[value='{SMOLLM}']"))
        Select(driver.find_element(By.ID, "model")).select_by_value(SMOLLM)
        declaration = {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
        driver.find_element(By.ID, "tools-on").click()
        driver.find_element(By.ID, "functions").send_keys(json.dumps([declaration]))
        send(driver, "What is the weather in Paris?")
        call = answers(driver, 1)[0]
        assert 'functionCall get_weather({"city":"Paris"})' in call.text
        result = call.find_element(By.CSS_SELECTOR, ".function-answer textarea")
        result.clear()
        result.send_keys('{"forecast": "sunny", "celsius": 21}')
        call.find_element(By.CSS_SELECTOR, ".function-answer button").click()
        reply = answers(driver, 2)[1]
        assert reply.find_element(By.CSS_SELECTOR, ".text").text == "It is sunny in Paris."
        body = sent_bodies(driver, ":streamGenerateContent?alt=sse")[-1]
        assert body["tools"] == [{"functionDeclarations": [declaration]}]
        assert [content["role"] for content in body["contents"]] == ["user", "model", "user"]
        assert body["contents"][1]["parts"][0]["functionCall"]["name"] == "get_weather"
        answer = body["contents"][2]["parts"][0]["functionResponse"]
        assert answer["name"] == "get_weather" and answer["response"] == {"forecast": "sunny", "celsius": 21}
        screenshot(driver, "5-function")

        # An image is uploaded the same way (the Files API), and waits as an attachment of the next message.
        picture = tmp_path / "sign.png"
        picture.write_bytes(text_image(["OPEN"]))
        driver.find_element(By.ID, "file").send_keys(str(picture))
        chip = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".chip.attachment")))
        assert "sign.png (image/png)" in chip.text and "/files/" in chip.get_attribute("data-uri")

        # "Get code" for the whole exchange runs as the Python SDK's code.
        driver.find_element(By.ID, "get-code").click()
        python = WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "code-python").text)
        assert "tools=[types.Tool(function_declarations=" in python and '"functionResponse"' in python
        environment = {**os.environ, "GEMINI_API_KEY": API_KEY}
        ran = subprocess.run(
            [sys.executable, "-c", python], capture_output=True, text=True, timeout=60, env=environment
        )
        assert ran.returncode == 0, ran.stderr
    finally:
        server.stop()
