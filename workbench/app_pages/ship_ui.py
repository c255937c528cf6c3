"""Issue 20's parts of the Compare and Train pages: ship/hold verdicts, forgetting, memorisation,
metrics over checkpoints, sweeps side by side, and the sweep form. Widgets only; data comes from
`wb.runs()` (the same JSON as `sift runs --json`) and is shown as text in tables."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench.services import Workbench

CKPT_METRICS = ("eval_loss", "json_field_accuracy", "rouge_l", "token_f1", "exact_match")


def _delta(fg: dict[str, Any] | None, key: str) -> Any:
    return ((fg or {}).get(key) or {}).get("delta")


def ship_table(listed: list[dict[str, Any]]) -> None:
    rows = []
    for r in listed:
        g, mem, fg = r.get("gate") or {}, r.get("memorization") or {}, r.get("forgetting")
        if not (g or mem or fg):
            continue
        rows.append(
            {
                "run": r["run_id"],
                "version": r["version"],
                "verdict": g.get("verdict"),
                "against": g.get("against"),
                "regressed / cases": f"{g.get('regressed')} / {g.get('cases')}" if g else None,
                "threshold": g.get("threshold"),
                "regressed cases": ", ".join(str(c) for c in g.get("regressed_cases") or []),
                "generic eval loss Δ": _delta(fg, "eval_loss"),
                "generic rouge_l Δ": _delta(fg, "rouge_l"),
                "probed": mem.get("probed"),
                "extracted exact": mem.get("extracted_exact"),
                "extracted near": mem.get("extracted_near"),
                "PII emitted": (
                    str(mem["pii_emitted"]) if mem.get("pii_emitted") is not None else ("not checked" if mem else None)
                ),
                "best checkpoint": (r.get("best_checkpoint") or {}).get("step"),
            }
        )
    if not rows:
        return
    st.subheader("Ship or hold")
    st.caption(
        "Regression gate: a run is held when more than the threshold of its eval cases score lower than the "
        "reference (the base model, or the run in production); `sift export-adapter` refuses a held run without "
        "--force. Forgetting: tuned minus base on the generic eval version. Memorisation: training answers the "
        "model continues exactly / nearly from their first tokens, and PII strings it wrote."
    )
    st.dataframe(rows, hide_index=True, width="stretch")


def checkpoint_chart(listed: list[dict[str, Any]]) -> None:
    with_ckpt = [r for r in listed if len(r.get("checkpoints") or []) > 1]
    if not with_ckpt:
        return
    st.subheader("Metrics over checkpoints")
    st.caption("Every save_steps checkpoint scored on the run's own eval split (eval loss + the fixed prompt subset).")
    metric = st.selectbox("Checkpoint metric", CKPT_METRICS, key="cmp_ckpt_metric")
    points = [
        {"step": c["step"], "run": r["run_id"], metric: c.get(metric)}
        for r in with_ckpt
        for c in r["checkpoints"]
        if c.get(metric) is not None
    ]
    if points:
        st.line_chart(points, x="step", y=metric, color="run")


def sweeps(listed: list[dict[str, Any]]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in listed:
        if r.get("sweep"):
            groups.setdefault(r["sweep"]["id"], []).append(r)
    if not groups:
        return
    st.subheader("Sweeps")
    for sid, members in groups.items():
        metric = members[0]["sweep"].get("metric", "eval_loss")
        st.markdown(f"**{sid}** · {members[0]['version']} · best by {metric} on the version's eval split")
        table = []
        for r in members:
            m = r.get("metrics") or {}
            row = {"run": r["run_id"], "state": r["state"], "best": "★" if r["sweep"].get("best") else ""}
            row.update({str(k): str(v) for k, v in (r["sweep"].get("params") or {}).items()})
            row["eval loss"] = m.get("eval_loss")
            row["tuned " + "json_field_accuracy"] = (m.get("tuned") or {}).get("json_field_accuracy")
            row["tuned rouge_l"] = (m.get("tuned") or {}).get("rouge_l")
            row["verdict"] = (r.get("gate") or {}).get("verdict")
            table.append(row)
        st.dataframe(table, hide_index=True, width="stretch")


def compare_sections(listed: list[dict[str, Any]]) -> None:
    ship_table(listed)
    checkpoint_chart(listed)
    sweeps(listed)


def sweep_form(wb: Workbench, source: str, config: dict[str, Any], require_actor: Any, run: Any) -> None:
    with st.expander("Sweep (a grid of configs, trained one at a time)", expanded=False):
        text = st.text_area(
            "Grid: one FIELD=V1,V2 per line",
            value="learning_rate=1e-4,2e-4\nlora_r=8,16",
            key="sweep_grid",
            help="Every combination becomes one run of this version; the settings above apply to all of them.",
        )
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if st.button("Launch sweep", disabled=not (source and lines), key="sweep_launch"):
            actor = require_actor()
            started = run(wb.sweep, source, lines, config=config, actor=actor)
            if started:
                st.success(f"Sweep {started.sweep_id}: {len(started.runs)} runs queued, trained one at a time.")
