"""The training process: a LoRA fine-tune of a GGUF base model on token sequences, run as
``python -m localgem.tuning.trainer SPEC`` by the tuning executor (``executor``), at low CPU priority.

Why a process of its own: PyTorch's training holds the interpreter for long stretches and takes every core it is
given; in the server's process it would slow every online request. A process can be niced, bounded to a few
threads, killed at once when its job is cancelled, and dies with the server (``PR_SET_PDEATHSIG``).

The base model is read from its GGUF file by transformers (dequantized to float32, the very weights llama.cpp
serves), wrapped by peft with LoRA on every attention and MLP projection, and trained with AdamW at a constant
learning rate. The loss is counted on the output tokens only: the prompt (the example's input through the
model's chat template, tokenized by the server exactly as it serves) is context.

The spec (JSON) names the GGUF, the examples (``[prompt_ids, output_ids]`` each), the hyperparameters and a work
folder. Progress goes to stdout as JSON lines (``started``, ``step``, ``checkpoint``, ``done``). A checkpoint
(adapter, optimizer and the step) is written to the work folder at most every ``checkpoint_seconds`` and at
each epoch's end; a run started on a folder with a checkpoint of the same spec resumes after its step. The
order of examples in an epoch depends only on the seed and the epoch, so a resumed run trains what the first
would have.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class TrainingSpec:
    gguf: str
    examples: list[tuple[list[int], list[int]]]
    epochs: int
    batch_size: int
    learning_rate: float
    output: str
    rank: int = 8
    alpha: float = 16.0
    seed: int = 0
    threads: int = 1
    checkpoint_seconds: float = 30.0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.examples) / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def digest(self) -> str:
        """What a checkpoint must have been trained on to be resumed."""
        fields = asdict(self)
        for volatile in ("output", "threads", "checkpoint_seconds"):
            fields.pop(volatile)
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def batches(self, epoch: int) -> list[list[int]]:
        """The example indexes of each step of an epoch (1-based epochs)."""
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    @classmethod
    def load(cls, path: Path) -> TrainingSpec:
        data = json.loads(path.read_text())
        data["examples"] = [(list(p), list(o)) for p, o in data["examples"]]
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def read_each_gguf_once() -> None:
    """In this process (the trainer's own), gguf's reader and tensor name maps are made once per file and
    architecture. transformers reads a GGUF twice to load it (its config, then its weights), and the adapter's
    writer once more; each read parses every metadata array (SmolLM2's: ~2.3 s, its vocabulary). It also makes
    gguf's tensor name map again for every module of the model (~400 times for SmolLM2, ~6 s). Both are
    pure reads of the file and of gguf's tables: the same objects serve every later call."""
    import gguf

    if not hasattr(gguf.GGUFReader, "cache_info"):
        gguf.GGUFReader = functools.lru_cache(maxsize=4)(gguf.GGUFReader)
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=16)(gguf.get_tensor_name_map)


def load_model(gguf: Path, rank: int, alpha: float) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    read_each_gguf_once()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGET_MODULES, bias="none")
    return get_peft_model(model, config)


def collate(examples: list[tuple[list[int], list[int]]], pad: int) -> dict[str, Any]:
    """Right-padded inputs; labels only on the output tokens (-100 elsewhere)."""
    import torch

    width = max(len(p) + len(o) for p, o in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (prompt, output) in enumerate(examples):
        tokens = prompt + output
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, len(prompt) : len(tokens)] = torch.tensor(output)
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Trainer:
    """The training loop, callable in-process too (``bench/tuning.py`` compares it with a bare peft loop)."""

    def __init__(self, spec: TrainingSpec, workdir: Path) -> None:
        import torch

        self.spec = spec
        self.workdir = workdir
        torch.manual_seed(spec.seed)
        self.model = load_model(Path(spec.gguf), spec.rank, spec.alpha)
        self.model.train()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=0.0)
        self.pad = int(getattr(self.model.config, "pad_token_id", None) or 0)
        self.step = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.workdir / "checkpoint.pt"

    def resume(self) -> int:
        """Loads the checkpoint of this spec, if the work folder has one; the step it ended."""
        import torch
        from peft import set_peft_model_state_dict

        if not self.checkpoint_path.exists():
            return 0
        saved = torch.load(self.checkpoint_path, weights_only=False)
        if saved.get("digest") != self.spec.digest():
            return 0
        set_peft_model_state_dict(self.model, saved["adapter"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.step = int(saved["step"])
        return self.step

    def checkpoint(self) -> None:
        import torch
        from peft import get_peft_model_state_dict

        partial = self.checkpoint_path.with_suffix(".partial")
        state = {
            "digest": self.spec.digest(),
            "step": self.step,
            "adapter": get_peft_model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
        }
        torch.save(state, partial)
        os.replace(partial, self.checkpoint_path)

    def train_step(self, indexes: list[int]) -> tuple[float, int]:
        """One optimizer step on these examples: the mean loss over their output tokens, and the tokens read."""
        batch = collate([self.spec.examples[i] for i in indexes], self.pad)
        loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return float(loss.detach()), int(batch["attention_mask"].sum())

    def run(self, report: bool = True) -> None:
        spec = self.spec
        saved_at = time.monotonic()
        for epoch in range(1, spec.epochs + 1):
            for index, indexes in enumerate(spec.batches(epoch)):
                if (epoch - 1) * spec.steps_per_epoch + index < self.step:
                    continue  # done before the checkpoint this run resumed from
                loss, tokens = self.train_step(indexes)
                if report:
                    emit("step", step=self.step, epoch=epoch, mean_loss=loss, tokens=tokens)
                if report and time.monotonic() - saved_at >= spec.checkpoint_seconds and self.step < spec.total_steps:
                    self.checkpoint()
                    saved_at = time.monotonic()
                    emit("checkpoint", step=self.step)
            if report and self.step < spec.total_steps:
                self.checkpoint()
                saved_at = time.monotonic()
                emit("checkpoint", step=self.step)

    def write_adapter(self, path: Path) -> None:
        from peft import get_peft_model_state_dict

        from localgem.tuning.adapter_gguf import adapter_tensors, base_shape, write_adapter

        architecture, n_head, n_head_kv = base_shape(Path(self.spec.gguf))
        state = {k: v.detach().cpu().numpy() for k, v in get_peft_model_state_dict(self.model).items()}
        partial = path.with_suffix(".partial")
        write_adapter(partial, adapter_tensors(state, architecture, n_head, n_head_kv), architecture, self.spec.alpha)
        os.replace(partial, path)


def main(argv: list[str]) -> int:
    spec_path = Path(argv[1])
    spec = TrainingSpec.load(spec_path)
    import torch

    torch.set_num_threads(max(1, spec.threads))
    trainer = Trainer(spec, spec_path.parent)
    resumed = trainer.resume()
    emit("started", total_steps=spec.total_steps, resumed_from=resumed)
    trainer.run()
    trainer.write_adapter(Path(spec.output))
    emit("done", output=spec.output)
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    # All is written (the adapter by rename, the events flushed): the interpreter's teardown of PyTorch and
    # transformers, which the job would wait for, is skipped (~1.7 s).
    sys.stderr.flush()
    os._exit(code)
