"""Images per second through ``models.predict`` against the same diffusers pipeline called in-process, same run.

The pipeline is a small random-weight Stable Diffusion (tests/tiny_diffusion.py: real diffusers code, a UNet of a
few MB) drawing ``--side``×``--side`` images in ``--steps`` steps, so the ratio shows what serving costs around
the pipeline: HTTP, JSON, base64, PNG encoding and the image worker's thread hop. (a) the pipeline called
directly in this process, images kept as PIL images; (b) ``:predict`` on ``localgem serve`` (one request at a
time, ``sampleCount`` images each). Prints images/s for each and (b)/(a).

    .venv/bin/python bench/images.py [--rounds 8] [--side 128] [--steps 10] [--samples 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import KEY, serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.tiny_diffusion import make_tiny_image_pipeline  # noqa: E402


def in_process(folder: Path, rounds: int, side: int, steps: int, samples: int) -> float:
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def draw(seed: int) -> None:
        generator = [torch.Generator("cpu").manual_seed(seed + i) for i in range(samples)]
        with torch.inference_mode():
            pipe(
                "a lighthouse",
                width=side,
                height=side,
                num_inference_steps=steps,
                num_images_per_prompt=samples,
                generator=generator,
            )

    draw(0)  # warm-up
    start = time.perf_counter()
    for seed in range(rounds):
        draw(seed)
    return rounds * samples / (time.perf_counter() - start)


def served(url: str, rounds: int, samples: int) -> float:
    def predict(seed: int) -> None:
        body = {"instances": [{"prompt": "a lighthouse"}], "parameters": {"sampleCount": samples, "seed": seed}}
        response = httpx.post(
            f"{url}/v1beta/models/bench-image:predict", json=body, headers={"x-goog-api-key": KEY}, timeout=600
        )
        response.raise_for_status()
        assert len(response.json()["predictions"]) == samples

    predict(0)  # warm-up: loads the pipeline
    start = time.perf_counter()
    for seed in range(rounds):
        predict(seed)
    return rounds * samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        folder = make_tiny_image_pipeline(Path(root) / "pipeline")
        models = json.dumps(
            [{"id": "bench-image", "task": "image", "path": str(folder), "steps": args.steps, "image_side": args.side}]
        )
        url, process = serve(str(Path(root) / "data"), models=models, code_execution="false")
        try:
            through_server = served(url, args.rounds, args.samples)
        finally:
            process.terminate()
            process.wait()
        direct = in_process(folder, args.rounds, args.side, args.steps, args.samples)
    shape = f"{args.side}×{args.side}, {args.steps} steps, {args.samples} per call"
    print(f"pipeline in-process : {direct:7.2f} images/s  ({shape})")
    print(f"localgem :predict   : {through_server:7.2f} images/s")
    print(f"ratio               : {through_server / direct:7.3f}×")


if __name__ == "__main__":
    main()
