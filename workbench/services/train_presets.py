"""Train presets: a handful of config changes an SME picks by name, and a rough time estimate.

The presets change only the fields that decide how long a run takes and what it is for; the
rest keeps the trainer's defaults (trainer/config.py). The estimate is throughput × work, with
throughputs measured on this project's machines (BENCHMARKS.md, "Train presets"): it says
minutes vs hours, not seconds. A finished run of the same device on this store replaces the
table's throughput with its own (`measured_tokens_per_s`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    what: str
    changes: dict[str, Any]
    device: str  # what the estimate assumes: "cpu" or "cuda"


PRESETS: tuple[Preset, ...] = (
    Preset(
        "Quick check (CPU, minutes)",
        "A short LoRA run on the CPU to check that the version trains and the pipeline works end to end: "
        "20 steps of 2 conversations, eval loss on 16 and answers for 4 eval conversations. Not a model to use.",
        {
            "device": "cpu",
            "max_steps": 20,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "gradient_checkpointing": False,
            "packing": False,
            "max_seq_len": 512,
            "eval_limit": 4,
            "eval_loss_limit": 16,
            "eval_batch_size": 4,
            "max_new_tokens": 48,
            "logging_steps": 5,
        },
        "cpu",
    ),
    Preset(
        "QLoRA on one GPU (recommended)",
        "The seeds' recipe on one CUDA GPU: 4-bit base, LoRA r 16 on all linear layers, lr 2e-4 cosine, two "
        "passes over the train split; answers for up to 200 eval conversations.",
        {"device": "auto", "eval_limit": 200, "max_new_tokens": 256},
        "cuda",
    ),
    Preset(
        "Thorough",
        "Three passes, longer conversations (2,048 tokens) and answers for every eval conversation: for the "
        "version you mean to ship. On a GPU.",
        {"device": "auto", "num_train_epochs": 3.0, "max_seq_len": 2048, "eval_limit": 0, "max_new_tokens": 384},
        "cuda",
    ),
)

# Throughput of the embedded SmolLM2-135M in tokens/s. CPU: LoRA in fp32 at ~60 tokens/s on one
# core of the 2-core sandbox (BENCHMARKS.md, "Several processes": 62.7 tokens/s, 1 process);
# evaluation is forward-only (~3× that); generation counts every sequence of a batch. CUDA: the
# H100 rows of BENCHMARKS.md ("Train", packing ~13–16k tokens/s) and the demo runs (README).
THROUGHPUT = {
    "cpu": {"train_tokens_per_s": 60.0, "generate_tokens_per_s": 40.0, "eval_tokens_per_s": 180.0, "start_s": 30.0},
    "cuda": {
        "train_tokens_per_s": 12000.0,
        "generate_tokens_per_s": 1500.0,
        "eval_tokens_per_s": 40000.0,
        "start_s": 40.0,
    },
}


def preset(name: str) -> Preset:
    for p in PRESETS:
        if p.name == name:
            return p
    raise KeyError(name)


def estimate_seconds(
    config: dict[str, Any],
    *,
    train_rows: int,
    eval_rows: int,
    mean_tokens: float | None,
    device: str,
    measured_tokens_per_s: float | None = None,
) -> dict[str, Any]:
    """Rough wall time of a run: `{"total_s", "train_s", "eval_s", "steps", "tokens_per_row",
    "assumed"}`. `mean_tokens` comes from the version's token counts (validate); without them a
    conversation is assumed to fill half of max_seq_len (and `assumed` says so)."""
    from trainer.config import TrainConfig

    cfg = TrainConfig.from_dict(config)
    rates = dict(THROUGHPUT["cuda" if device == "cuda" else "cpu"])
    if measured_tokens_per_s:
        rates["train_tokens_per_s"] = measured_tokens_per_s
    assumed = mean_tokens is None
    per_row = min(float(mean_tokens if mean_tokens is not None else cfg.max_seq_len / 2), float(cfg.max_seq_len))
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * max(1, cfg.num_processes)
    if cfg.max_steps > 0:
        steps = cfg.max_steps
        rows_trained = float(steps * per_step)
    else:
        steps = max(1, math.ceil(train_rows * cfg.num_train_epochs / per_step))
        rows_trained = train_rows * cfg.num_train_epochs
    train_s = rows_trained * per_row / rates["train_tokens_per_s"]
    eval_s = 0.0
    if cfg.evaluate and eval_rows:
        loss_rows = min(eval_rows, cfg.eval_loss_limit) if cfg.eval_loss_limit else eval_rows
        gen_rows = min(eval_rows, cfg.eval_limit) if cfg.eval_limit else eval_rows
        passes = 2 if cfg.generate_base else 1
        # Generation is batched: a batch costs about its longest answer, tokens per second per batch.
        batches = math.ceil(gen_rows / cfg.eval_batch_size)
        eval_s = (
            loss_rows * per_row * passes / rates["eval_tokens_per_s"]
            + passes
            * batches
            * cfg.max_new_tokens
            * min(cfg.eval_batch_size, gen_rows)
            / rates["generate_tokens_per_s"]
        )
    total = rates["start_s"] + train_s + eval_s
    return {
        "total_s": round(total),
        "train_s": round(train_s),
        "eval_s": round(eval_s),
        "steps": steps,
        "tokens_per_row": round(per_row),
        "assumed": assumed,
        "device": "cuda" if device == "cuda" else "cpu",
    }


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
