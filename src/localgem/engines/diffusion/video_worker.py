"""One video, rendered in a process of its own: ``python -m localgem.engines.diffusion.video_worker spec.json``.

The server's video executor starts it, reads its progress (JSON lines on stdout: ``{"event": "step", "step"}``)
and, once it exits 0, stores the MP4 it wrote. A worker that dies (killed, out of memory, a crash in native
code) takes nothing else down: the job ends FAILED with the reason."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class VideoJob:
    """What to render (a validated request, as the video service stores it)."""

    prompt: str
    width: int
    height: int
    frames: int
    fps: int
    seed: int
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None


@dataclass(frozen=True)
class VideoSpec:
    """A worker's input: the job, the pipeline folder, where the MP4 goes, and PyTorch's threads."""

    job: VideoJob
    folder: str
    output: str
    threads: int | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> VideoSpec:
        raw = json.loads(path.read_text())
        return cls(**{**raw, "job": VideoJob(**raw["job"])})


def _say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def render(spec: VideoSpec) -> None:
    import inspect

    import torch
    from diffusers import DiffusionPipeline

    from localgem.engines.diffusion.mp4 import write_mp4

    if spec.threads:
        torch.set_num_threads(spec.threads)
    pipe = DiffusionPipeline.from_pretrained(spec.folder, dtype=torch.float32, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    accepted = inspect.signature(pipe.__call__).parameters
    job = spec.job
    kwargs: dict[str, Any] = {
        "prompt": job.prompt,
        "num_frames": job.frames,
        "width": job.width,
        "height": job.height,
        "generator": torch.Generator("cpu").manual_seed(job.seed),
        "output_type": "np",
        "negative_prompt": job.negative_prompt,
        "num_inference_steps": job.steps,
        "guidance_scale": job.guidance_scale,
    }

    def progress(p: Any, step: int, timestep: Any, tensors: dict) -> dict:
        _say(event="step", step=step + 1)
        return {}

    def old_progress(step: int, timestep: Any, latents: Any) -> None:  # pipelines before callback_on_step_end
        _say(event="step", step=step + 1)

    kwargs["callback_on_step_end"] = progress
    if "callback_on_step_end" not in accepted:
        kwargs.update(callback=old_progress, callback_steps=1)
    _say(event="started")
    with torch.inference_mode():
        result = pipe(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})
    frames = result.frames[0]
    write_mp4(list(frames), job.fps, Path(spec.output))
    _say(event="done", frames=len(frames))


if __name__ == "__main__":
    render(VideoSpec.load(Path(sys.argv[1])))
