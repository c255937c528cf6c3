"""Evaluation on another frozen version (config `extra_eval`).

The run's own eval split comes from the version it trained on, so runs on different versions are
scored on different items (and a leaky split flatters its own run). `extra_eval` names a second
exported version — typically a clean gold set frozen as its own version — whose eval split is scored
the same way (loss, then generation with the tuned and, when `generate_base`, the base model), so
every run that names it is measured on the same items. Results go to `eval.json["extra_eval"]`,
per-example rows to `extra_eval_samples.jsonl`.
"""

from __future__ import annotations

from typing import Any

from trainer.config import TrainConfig
from trainer.manifest import Export, ManifestError, load_export
from trainer.rundir import RunDir

SAMPLES_FILE = "extra_eval_samples.jsonl"


def load(cfg: TrainConfig) -> Export | None:
    """The extra eval version, verified like the train version (checked before training starts)."""
    if not cfg.extra_eval:
        return None
    export = load_export(cfg.extra_eval, require_train=False)
    if not export.eval:
        raise ManifestError(f"extra_eval: version {export.version!r} at {cfg.extra_eval} has an empty eval split")
    return export


def evaluate(
    cfg: TrainConfig, export: Export, model: Any, tok: Any, run: RunDir, *, renderer: Any, gen_kw: dict[str, Any]
) -> dict[str, Any]:
    """Loss and generation metrics of the tuned (and base) model on `export`'s eval split."""
    from trainer import evaluate as ev
    from trainer.data import eval_prompts, render_all

    examples, stats = render_all(
        tok, export.eval, cfg.max_seq_len, assistant_only=cfg.assistant_only_loss, renderer=renderer
    )
    if cfg.eval_loss_limit:
        examples = examples[: cfg.eval_loss_limit]
    stop = gen_kw.get("should_stop")
    pad = tok.pad_token_id
    tuned_loss = ev.eval_loss(model, examples, pad, batch_size=cfg.eval_batch_size, should_stop=stop)
    with model.disable_adapter():
        base_loss = ev.eval_loss(model, examples, pad, batch_size=cfg.eval_batch_size, should_stop=stop)
    prompts = eval_prompts(export.eval, renderer.system_prompt)
    if cfg.eval_limit:
        prompts = prompts[: cfg.eval_limit]
    tuned = ev.generate(model, tok, prompts, **gen_kw)
    base = None
    if cfg.generate_base:
        with model.disable_adapter():
            base = ev.generate(model, tok, prompts, **gen_kw)
    metrics, rows = ev.summarize(prompts, base, tuned)
    metrics["tuned"].update(eval_loss=tuned_loss, perplexity=ev.perplexity(tuned_loss))
    if base is not None:
        metrics["base"].update(eval_loss=base_loss, perplexity=ev.perplexity(base_loss))
    with open(run.path / SAMPLES_FILE, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(ev.dumps_line(r))
    run.log.info("extra eval on %s: tuned %s", export.version, metrics["tuned"])
    return {
        "version": export.version,
        "manifest_sha256": export.manifest_sha256,
        "eval_loss": tuned_loss,
        "perplexity": ev.perplexity(tuned_loss),
        "n_eval_loss": len(examples),
        "n_generated": len(prompts),
        "rendered": stats,
        **metrics,
    }
