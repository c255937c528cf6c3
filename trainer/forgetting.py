"""The forgetting guard: keep the base model's general behaviour while it learns the task.

- Mix-in (`mix_version`, `mix_fraction`): conversations of another version's train split — a
  generic instruction set — make up `mix_fraction` of the train split (drawn without replacement
  while they last, seeded). What was mixed (version, manifest hash, fraction, count) is recorded in
  the run's config.json beside the train version's manifest, which itself never changes.
- Generic eval (`generic_eval`): another version's eval split scored like the run's own (loss, then
  greedy answers) with the base model and the tuned one; `forgetting` in eval.json is the tuned
  minus base delta of each metric. A rising loss or falling scores there is what was forgotten.

`builtin:generic` names the generic set Sift ships (datasets/generic/): general prompts written for
the project, answered by the embedded base model itself (self-distillation: training on it pulls the
model towards its own base behaviour). `scripts/make_generic.py` regenerates it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from curation.records import Conversation
from trainer.config import TrainConfig
from trainer.manifest import Export, ManifestError, load_export

BUILTIN = "builtin:generic"
SAMPLES_FILE = "generic_eval_samples.jsonl"
DELTA_METRICS = ("eval_loss", "exact_match", "token_f1", "rouge_l")


def builtin_path() -> Path:
    return Path(__file__).resolve().parent.parent / "datasets" / "generic"


def resolve(spec: str) -> str:
    return str(builtin_path()) if spec == BUILTIN else spec


def load_mix(cfg: TrainConfig) -> Export | None:
    if not cfg.mix_version or not cfg.mix_fraction:
        return None
    export = load_export(resolve(cfg.mix_version))
    return export


def load_generic(cfg: TrainConfig) -> Export | None:
    if not cfg.generic_eval:
        return None
    export = load_export(resolve(cfg.generic_eval), require_train=False)
    if not export.eval:
        raise ManifestError(f"generic_eval: version {export.version!r} has an empty eval split")
    return export


def mix(cfg: TrainConfig, train: list[Conversation], other: Export) -> tuple[list[Conversation], dict[str, Any]]:
    """`train` plus n = round(f / (1 - f) x len(train)) conversations of `other`'s train split, so they
    are a fraction f of the result; shuffled in with the run's seed."""
    f = cfg.mix_fraction
    want = round(f / (1 - f) * len(train))
    rng = random.Random(cfg.seed)
    pool = list(other.train)
    picked: list[Conversation] = []
    while len(picked) < want and pool:
        rng.shuffle(pool)
        picked += pool[: want - len(picked)]  # cycles through the set again only when it is exhausted
    out = train + picked
    rng.shuffle(out)
    record = {
        "version": other.version,
        "manifest_sha256": other.manifest_sha256,
        "path": str(other.path),
        "fraction": f,
        "conversations": len(picked),
        "distinct": len({c.id for c in picked}),
        "train_before": len(train),
        "train_after": len(out),
    }
    return out, record


def forgetting(result: dict[str, Any]) -> dict[str, Any]:
    """Tuned minus base per metric of a generic-eval result (extra_eval.evaluate's shape)."""
    base, tuned = result.get("base") or {}, result.get("tuned") or {}
    out: dict[str, Any] = {"version": result.get("version"), "n": result.get("n_generated")}
    for k in DELTA_METRICS:
        b, t = base.get(k), tuned.get(k)
        out[k] = {
            "base": b,
            "tuned": t,
            "delta": round(t - b, 4) if isinstance(b, int | float) and isinstance(t, int | float) else None,
        }
    return out
