"""The model card `sift export-adapter` writes as README.md beside the adapter (or merged model).

A pure function of what the run folder and the store know: base model, version and manifest hash,
the curation stages behind the version with their counts, the evaluations (own eval split, a
shared gold/extra version, the generic forgetting set), the regression gate's verdict, the
memorisation probe, the source licences and the risks that remain. Text from the data (names,
licences) is put in code spans so the card renders nothing it carries.
"""

from __future__ import annotations

from typing import Any

METRICS = ("eval_loss", "exact_match", "token_f1", "rouge_l", "json_valid", "json_field_accuracy")


def _c(v: Any) -> str:
    """A value as inline code (backticks in it replaced), so data never renders as markdown."""
    return "`" + str(v).replace("`", "'").replace("\n", " ") + "`"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]) -> list[str]:
    out = ["| eval | metric | base | tuned |", "|---|---|---|---|"]
    for name, base, tuned in rows:
        for k in METRICS:
            b, t = (base or {}).get(k), (tuned or {}).get(k)
            if b is None and t is None:
                continue
            out.append(f"| {name} | {k} | {_num(b)} | {_num(t)} |")
    return out


def render(card: dict[str, Any]) -> str:
    """`card`: {"run_id", "base_model", "config", "version", "manifest" (the export's manifest.json),
    "metrics" (sift runs' metrics), "gate", "merged"}."""
    m = card.get("metrics") or {}
    cfg = card.get("config") or {}
    manifest = card.get("manifest") or {}
    body: dict[str, Any] = manifest["version"] if isinstance(manifest.get("version"), dict) else {}
    lines = [
        f"# {card.get('run_id')}: {'merged model' if card.get('merged') else 'LoRA adapter'}",
        "",
        "Written by Sift (`sift export-adapter`). Everything below comes from the run folder and the store.",
        "",
        "## Model",
        f"- Base model: {_c(card.get('base_model') or cfg.get('base_model'))}",
        f"- Recipe: {_recipe(cfg)}",
        f"- Trained on version {_c(card.get('version'))}, manifest sha256 {_c(manifest.get('manifest_sha256'))}",
    ]
    mix = card.get("mix")
    if mix:
        lines.append(
            f"- Forgetting guard mix-in: {mix.get('conversations')} conversations of {_c(mix.get('version'))} "
            f"({mix.get('fraction'):.0%} of the train split)"
        )
    counts = body.get("counts") or {}
    lines += ["", "## Data and curation"]
    lines.append(f"- Train / eval conversations: {counts.get('train', '-')} / {counts.get('eval', '-')}")
    for reason, n in sorted((counts.get("excluded") or {}).items()):
        lines.append(f"- Excluded at freeze, {_c(reason)}: {n}")
    for st in body.get("stages") or []:
        lines.append(f"- Stage {_c(st.get('stage'))} (run {_c(st.get('run_id'))})")
    if not body.get("stages"):
        lines.append("- No curation stage recorded in the manifest")
    leak = body.get("leakage_check") or {}
    if leak:
        lines.append(f"- Eval rows duplicating train (freeze's leakage check): {len(leak.get('pairs') or [])}")
    lines += ["", "## Evaluations", ""]
    rows = [("own eval split", m.get("base"), m.get("tuned"))]
    extra = m.get("extra_eval") or {}
    if extra:
        rows.append((f"held-out version {_c(extra.get('version'))}", extra.get("base"), extra.get("tuned")))
    lines += _table(rows)
    fg = m.get("forgetting") or {}
    if fg:
        lines += ["", f"Forgetting guard on {_c(fg.get('version'))} ({fg.get('n')} generic prompts): tuned minus base"]
        for k in ("eval_loss", "rouge_l", "token_f1", "exact_match"):
            d = fg.get(k) or {}
            lines.append(f"- {k}: {_num(d.get('base'))} → {_num(d.get('tuned'))} (delta {_num(d.get('delta'))})")
    best = m.get("best_checkpoint") or {}
    if best:
        lines.append(
            f"\nBest checkpoint on the own eval split by {_c(best.get('metric'))}: step {best.get('step')} "
            f"({_c(best.get('checkpoint'))}, {_num(best.get('value'))})"
        )
    gate = card.get("gate") or {}
    lines += ["", "## Regression gate"]
    if gate:
        lines.append(
            f"- Verdict: **{gate.get('verdict')}** against {_c(gate.get('against'))}: {gate.get('regressed')} of "
            f"{gate.get('cases')} cases regressed (threshold {_num(gate.get('threshold'))})"
        )
        if card.get("forced"):
            lines.append("- Exported with `--force` despite the verdict")
    else:
        lines.append("- Not evaluated")
    mem = m.get("memorization") or {}
    lines += ["", "## Memorisation probe"]
    if mem:
        base = mem.get("base") or {}
        lines += [
            f"- Training answers probed: {mem.get('probed')} ({mem.get('tokens')} tokens held back each)",
            f"- Continued exactly: tuned {mem.get('extracted_exact')}, base {base.get('extracted_exact', '-')}",
            f"- Continued nearly (≥ {mem.get('near_threshold')} similar): tuned {mem.get('extracted_near')}, "
            f"base {base.get('extracted_near', '-')}",
            (
                f"- PII strings known for this version: {mem.get('pii_strings')}; emitted by the tuned model: "
                f"{mem.get('pii_emitted')} (base {base.get('pii_emitted', '-')})"
                if mem.get("pii_emitted") is not None
                else "- PII: not checked (the run folder had no list of the version's PII strings)"
            ),
        ]
    else:
        lines.append("- Not run")
    lines += ["", "## Sources and licences"]
    sources = (body.get("provenance") or {}).get("sources") or []
    for s in sources:
        if isinstance(s, dict):
            name = s.get("name") or s.get("path") or s.get("file") or s.get("source")
            lines.append(f"- {_c(name)}: licence {_c(s.get('licence') or s.get('license') or 'not stated')}")
    if not sources:
        lines.append("- Not recorded in the manifest")
    lines += ["", "## Known risks", *[f"- {r}" for r in risks(card)], ""]
    return "\n".join(lines)


def _recipe(cfg: dict[str, Any]) -> str:
    if cfg.get("lora") is False:
        return "full fine-tuning"
    parts = [f"LoRA r {cfg.get('lora_r')}, alpha {cfg.get('lora_alpha')}"]
    if cfg.get("use_dora"):
        parts.append("DoRA")
    if cfg.get("use_rslora"):
        parts.append("rsLoRA")
    parts.append(f"lr {cfg.get('learning_rate')}, {cfg.get('max_steps')} steps (max)")
    return ", ".join(str(p) for p in parts)


def risks(card: dict[str, Any]) -> list[str]:
    m = card.get("metrics") or {}
    out: list[str] = []
    gate = card.get("gate") or {}
    if gate.get("verdict") != "ship":
        out.append("The regression gate did not pass: some eval cases are worse than the reference.")
    mem = m.get("memorization") or {}
    if mem.get("pii_emitted"):
        out.append(f"The tuned model wrote {mem['pii_emitted']} PII string(s) found in its training data.")
    base_exact = (mem.get("base") or {}).get("extracted_exact") or 0
    if (mem.get("extracted_exact") or 0) > base_exact:
        out.append("The tuned model recites training answers verbatim more often than the base model.")
    fg = m.get("forgetting") or {}
    d = (fg.get("eval_loss") or {}).get("delta")
    if isinstance(d, int | float) and d > 0:
        out.append(f"Generic eval loss rose by {d:.4g}: some general behaviour was forgotten.")
    if not mem:
        out.append("No memorisation probe was run: rare strings in the training data may be recited.")
    out.append("Metrics come from small eval sets; they do not cover every use the model may be put to.")
    return out
