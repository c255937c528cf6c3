"""Train: pick a version, edit the trainer config (with a VRAM estimate), launch, follow, cancel."""

from __future__ import annotations

import json

import streamlit as st

from workbench.app_pages.common import get_wb, md_escape, require_actor, run

wb = get_wb()
st.title("Train")
st.caption(
    "Trains a LoRA adapter on a frozen version in a separate process (QLoRA on CUDA, plain LoRA on CPU), "
    "then evaluates it against the base model on the version's eval split."
)

# ---------------------------------------------------------------- version and config
versions = [v["name"] for v in wb.versions()["versions"]] if hasattr(wb, "versions") else []
source = st.selectbox("Version", [*versions, "(an exported folder…)"], key="train_version")
if source == "(an exported folder…)":
    source = st.text_input("Path of an exported version (folder with manifest.json)", key="train_export_path")

fields = wb.train_config_fields()
config: dict[str, object] = {}
groups: dict[str, list[dict[str, object]]] = {}
for f in fields:
    groups.setdefault(str(f["group"]), []).append(f)
with st.expander("Trainer config", expanded=False):
    for group, items in groups.items():
        st.markdown(f"**{md_escape(group)}**")
        cols = st.columns(3)
        for i, f in enumerate(items):
            name, default, help_ = str(f["name"]), f["default"], str(f["help"])
            col = cols[i % 3]
            key = f"cfg_{name}"
            if f.get("choices"):
                choices = list(f["choices"])  # type: ignore[call-overload]
                config[name] = col.selectbox(name, choices, index=choices.index(default), help=help_, key=key)
            elif isinstance(default, bool):
                config[name] = col.checkbox(name, value=default, help=help_, key=key)
            elif isinstance(default, int):
                config[name] = int(col.number_input(name, value=default, step=1, help=help_, key=key))
            elif isinstance(default, float):
                config[name] = float(col.number_input(name, value=default, format="%g", help=help_, key=key))
            elif isinstance(default, list):
                config[name] = [
                    s.strip()
                    for s in col.text_input(name, value=",".join(default), help=help_, key=key).split(",")
                    if s.strip()
                ]
            else:
                config[name] = col.text_input(name, value=str(default), help=help_, key=key)
changed = {k: v for k, v in config.items() if v != next(f["default"] for f in fields if f["name"] == k)}
estimate = run(wb.vram_estimate, config)
if estimate:
    st.caption(
        f"Estimated peak GPU memory ≈ {estimate['total']} GiB (weights {estimate['weights']}, LoRA + optimizer "
        f"{estimate['lora_and_optimizer']}, activations {estimate['activations']}, logits {estimate['logits']})."
    )
if changed:
    st.caption("Changed from the defaults: " + json.dumps(changed))
if st.button("Launch training", type="primary", disabled=not source):
    actor = require_actor()
    started = run(wb.train, source, config=changed, actor=actor)
    if started:
        st.session_state["train_run"] = started["run_id"]
        st.success(md_escape(f"Started run {started['run_id']} ({started['state']})."))

# ---------------------------------------------------------------- runs
st.subheader("Runs")
listed = wb.runs()["runs"]
if not listed:
    st.caption("No runs yet.")
    st.stop()
ids = [r["run_id"] for r in reversed(listed)]
chosen = st.session_state.get("train_run")
pick = st.selectbox(
    "Run",
    ids,
    index=ids.index(chosen) if chosen in ids else 0,
    format_func=lambda i: next(f"{r['run_id']} · {r['version']} · {r['state']}" for r in listed if r["run_id"] == i),
)


def show_run(run_id: str) -> None:
    d = run(wb.run_detail, run_id)
    if d is None:
        return
    status = d["status"] or {}
    total = d["total_steps"] or status.get("total") or 0
    step = d["step"] or status.get("step") or 0
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("State", d["state"])
    c2.metric("Step", f"{step}/{total or '?'}")
    eta = status.get("eta_s")
    c3.metric("ETA", f"{eta:.0f} s" if isinstance(eta, int | float) and d["state"] == "running" else "-")
    c4.metric("Backend", d["backend"] or status.get("backend") or "-")
    if total:
        st.progress(min(1.0, step / total))
    if status.get("message"):
        st.caption(status["message"])
    losses = [{"step": c["step"], "loss": c["loss"]} for c in d["curve"] if c.get("loss") is not None]
    if losses:
        st.line_chart(losses, x="step", y="loss")
    if d["state"] == "failed":
        st.error(d.get("error") or status.get("error") or "failed")
        if d.get("hint") or status.get("hint"):
            st.info(d.get("hint") or status.get("hint"))
    if d["state"] in ("queued", "running") and st.button("Cancel run", key=f"cancel_{run_id}"):
        require_actor()
        r = run(wb.cancel_run, run_id)
        if r:
            st.warning("Stopping after the current step; the adapter saved so far is kept.")
    if d["metrics"]:
        st.json(d["metrics"], expanded=False)
    with st.expander("Log tail"):
        st.code(d["log_tail"] or "", language="text")


live = any(r["run_id"] == pick and r["state"] in ("queued", "running") for r in listed)
if live:
    st.fragment(run_every=3)(show_run)(pick)
else:
    show_run(pick)
