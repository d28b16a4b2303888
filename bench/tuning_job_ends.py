"""A tuning job's fixed costs: the trainer process (``python -m localgem.tuning.trainer``, as the executor starts
it) from its start to its first step (imports, the GGUF read and dequantized by transformers, LoRA), its steps, and
from its last step to its exit (the adapter written as a GGUF). Same spec (SmolLM2, 24 examples of 50 tokens,
2 epochs, batch 4: 12 steps), this tree and ``--src-before`` (another checkout's src folder) in turns; prints the
median seconds of each part, this tree's ÷ the other's, and whether every run's losses were the same.

    .venv/bin/python bench/tuning_job_ends.py [--rounds 3] [--threads 1] [--src-before <src folder>]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localgem.models.packaged import smollm2_135m_instruct
from localgem.tuning.trainer import TrainingSpec


def spec_file(folder: Path, threads: int) -> Path:
    rng = random.Random(0)
    tokens = [rng.randrange(100, 40000) for _ in range(24 * 50)]
    examples = [(tokens[i : i + 35], tokens[i + 35 : i + 50]) for i in range(0, len(tokens), 50)]
    spec = TrainingSpec(
        gguf=str(smollm2_135m_instruct(None)),
        examples=examples,
        epochs=2,
        batch_size=4,
        learning_rate=1e-3,
        output=str(folder / "adapter.gguf"),
        threads=threads,
    )
    spec.save(folder / "spec.json")
    return folder / "spec.json"


def one_job(src: str | None, threads: int) -> tuple[dict[str, float], list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        spec = spec_file(Path(folder), threads)
        env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
        start = time.monotonic()
        trainer = subprocess.Popen(
            [sys.executable, "-m", "localgem.tuning.trainer", str(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        steps, losses = [], []
        assert trainer.stdout is not None
        for line in trainer.stdout:
            event = json.loads(line)
            if event["event"] == "step":
                steps.append(time.monotonic())
                losses.append(event["mean_loss"])
        assert trainer.wait() == 0 and len(steps) == 12
        end = time.monotonic()
    seconds = {"to first step": steps[0] - start, "steps": steps[-1] - steps[0], "last step to exit": end - steps[-1]}
    return seconds, losses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--src-before", help="another checkout's src folder, run in the same rounds")
    args = parser.parse_args()
    trees = {"this tree": None, **({"--src-before": args.src_before} if args.src_before else {})}
    found: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    losses = set()
    for _ in range(args.rounds):  # in turns, so drift on a shared machine hits both alike
        for tree, src in trees.items():
            seconds, run_losses = one_job(src, args.threads)
            found[tree].append(seconds)
            losses.add(tuple(run_losses))
    medians = {
        tree: {part: statistics.median(run[part] for run in runs) for part in runs[0]} for tree, runs in found.items()
    }
    print(f"trainer of 12 steps, {args.threads} thread(s), median of {args.rounds} rounds, seconds")
    for tree, parts in medians.items():
        total = sum(parts.values())
        print(f"{tree:12s} " + ", ".join(f"{part} {value:.2f}" for part, value in parts.items()) + f", all {total:.2f}")
    print("every run's 12 losses the same, bit for bit:", len(losses) == 1)
    if args.src_before:
        ours, theirs = medians["this tree"], medians["--src-before"]
        print("this tree ÷ before: " + ", ".join(f"{part} {ours[part] / theirs[part]:.2f}" for part in ours))


if __name__ == "__main__":
    main()
