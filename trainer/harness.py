"""The checkpoint harness: every `save_steps` checkpoint is scored like the end of the run.

At each checkpoint the adapter (or, for a full fine-tune, the model) is saved under
`checkpoints/step-N/`, then scored on the run's own eval split: the eval loss on the same rows the
end of the run uses, and greedy answers for a fixed subset — the first `checkpoint_eval_limit`
eval prompts — with the same metrics. The end of the run contributes its row from its own results
on that same subset, so every row of the curve is comparable. The best checkpoint is picked by
`best_metric` on that split (never on a gold or extra eval version, which would make it a
training signal). Rows go to metrics.jsonl as they come (the live curve) and to
eval.json["checkpoints"].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainer.config import TrainConfig
from trainer.data import Example, Prompt

LOWER_IS_BETTER = ("eval_loss",)


def subset(prompts: list[Prompt], cfg: TrainConfig) -> list[Prompt]:
    return prompts[: cfg.checkpoint_eval_limit]


def score_checkpoint(
    cfg: TrainConfig,
    loaded: Any,
    eval_ex: list[Example],
    prompts: list[Prompt],
    *,
    step: int,
    path: str,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Eval loss and generation metrics of the model as it is now (called between training steps)."""
    from trainer import backends
    from trainer import evaluate as ev

    model, tok = loaded.model, loaded.tokenizer
    was_training = model.training
    backends.for_inference(loaded)
    try:
        loss = ev.eval_loss(model, eval_ex, tok.pad_token_id, batch_size=cfg.eval_batch_size, should_stop=should_stop)
        row: dict[str, Any] = {"step": step, "checkpoint": path, "eval_loss": loss, "n_eval_loss": len(eval_ex)}
        if prompts:
            answers = ev.generate(
                model,
                tok,
                prompts,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.eval_batch_size,
                should_stop=should_stop,
            )
            metrics, _ = ev.summarize(prompts, None, answers)
            row["tuned"] = metrics["tuned"]
    finally:
        if was_training:
            for_training(loaded)
    return row


def for_training(loaded: Any) -> None:
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(loaded.model)
    else:
        loaded.model.train()


def final_row(
    step: int, eval_loss: float | None, n_eval_loss: int, rows: list[dict[str, Any]], k: int
) -> dict[str, Any]:
    """The end of the run as a checkpoint row: its eval loss, and its answers to the same first K prompts."""
    from trainer.metrics import aggregate

    row: dict[str, Any] = {"step": step, "checkpoint": "adapter", "eval_loss": eval_loss, "n_eval_loss": n_eval_loss}
    first = [r["tuned_scores"] for r in rows[:k]]
    if first:
        row["tuned"] = aggregate(first)
    return row


def value(row: dict[str, Any], metric: str) -> float | None:
    v = row.get("eval_loss") if metric == "eval_loss" else (row.get("tuned") or {}).get(metric)
    return float(v) if v is not None else None


def best(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The best row by `metric` (lowest eval loss, else highest score; the earliest step on a tie)."""
    scored = [(value(r, metric), r) for r in rows]
    scored = [(v, r) for v, r in scored if v is not None]
    if not scored:
        return None
    sign = 1 if metric in LOWER_IS_BETTER else -1
    v, r = min(scored, key=lambda x: (sign * x[0], x[1]["step"]))  # type: ignore[operator]
    return {"step": r["step"], "checkpoint": r["checkpoint"], "metric": metric, "value": v}
