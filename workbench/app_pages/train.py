"""Train: pick a version and a preset (with an estimated time), fold out every trainer field if
needed, launch, follow, cancel."""

from __future__ import annotations

import json

import streamlit as st

from workbench.app_pages import ship_ui
from workbench.app_pages.common import get_wb, md_escape, page_link, require_actor, run

wb = get_wb()
st.title("Train")
st.caption(
    "Trains a LoRA adapter on a frozen version in a separate process (QLoRA on CUDA, plain LoRA on CPU), "
    "then evaluates it against the base model on the version's eval split."
)

# ---------------------------------------------------------------- version, preset and config
from workbench.services.train_presets import PRESETS, estimate_seconds, format_duration  # noqa: E402

EXPORTED = "(an exported folder…)"
versions = [v["name"] for v in wb.versions().versions][::-1]  # newest first
if not versions:
    st.info(
        "Freeze a version first: training reads a frozen train/eval split, never the live store. "
        "Review some conversations, then freeze them on the Versions page."
    )
    page_link("versions", "Go to Versions →")
source = st.selectbox("Version", [*versions, EXPORTED], key="train_version")
if source == EXPORTED:
    source = st.text_input("Path of an exported version (folder with manifest.json)", key="train_export_path")

names = [p.name for p in PRESETS]
chosen_preset = st.radio("Preset", names, key="train_preset", horizontal=True)
preset = PRESETS[names.index(chosen_preset)]
st.caption(preset.what)

fields = wb.train_config_fields()
defaults = {str(f["name"]): f["default"] for f in fields}
# The preset fills the form; a field the user changes afterwards stays as they set it until the
# preset changes again.
if st.session_state.get("train_preset_applied") != chosen_preset:
    st.session_state["train_preset_applied"] = chosen_preset
    for name in defaults:
        st.session_state.pop(f"cfg_{name}", None)
preset_values = {**defaults, **preset.changes}
config: dict[str, object] = {}
groups: dict[str, list[dict[str, object]]] = {}
for f in fields:
    groups.setdefault(str(f["group"]), []).append(f)
with st.expander("Advanced: every trainer field", expanded=False):
    for group, items in groups.items():
        st.markdown(f"**{md_escape(group)}**")
        cols = st.columns(3)
        for i, f in enumerate(items):
            name, help_ = str(f["name"]), str(f["help"])
            default = preset_values[name]
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
changed = {k: v for k, v in config.items() if v != defaults[k]}
if source and source in versions:
    info = run(wb.version_manifest, source)
    if info:
        v = info.version
        ts = (v.get("token_stats") or {}).get("train") or {}
        mean = ts.get("mean") or ts.get("p50")
        device = "cpu" if config.get("device") == "cpu" else preset.device
        est = run(
            estimate_seconds,
            dict(config),
            train_rows=v["counts"]["train"],
            eval_rows=v["counts"]["eval"],
            mean_tokens=float(mean) if mean else None,
            device=device,
        )
        if est:
            st.markdown(
                f"**Estimated time on {'the CPU' if est['device'] == 'cpu' else 'one GPU'}: about "
                f"{format_duration(est['total_s'])}** ({est['steps']:,} steps; training "
                f"{format_duration(est['train_s'])}, evaluation {format_duration(est['eval_s'])}; "
                f"{v['counts']['train']:,} train / {v['counts']['eval']:,} eval conversations of ~"
                f"{est['tokens_per_row']:,} tokens)."
            )
            if est["assumed"]:
                st.caption(
                    "No token counts for this version (run Validate before freezing): assumed half of max_seq_len."
                )
estimate = run(wb.vram_estimate, config)
if estimate and preset.device == "cuda":
    st.caption(
        f"Estimated peak GPU memory ≈ {estimate.total} GiB (weights {estimate.weights}, LoRA + optimizer "
        f"{estimate.lora_and_optimizer}, activations {estimate.activations}, logits {estimate.logits})."
    )
if changed:
    st.caption("Changed from the trainer's defaults: " + json.dumps(changed))
if st.button("Launch training", type="primary", disabled=not source):
    actor = require_actor()
    started = run(wb.train, source, config=changed, actor=actor)
    if started:
        st.session_state["train_run"] = started.run_id
        st.success(md_escape(f"Started run {started.run_id} ({started.state})."))

ship_ui.sweep_form(wb, source, changed, require_actor, run)

# ---------------------------------------------------------------- runs
st.subheader("Runs")
listed = wb.runs().runs
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
    row = d.run
    status = d.status or {}
    total = row["total_steps"] or status.get("total") or 0
    step = row["step"] or status.get("step") or 0
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("State", row["state"])
    c2.metric("Step", f"{step}/{total or '?'}")
    eta = status.get("eta_s")
    c3.metric("ETA", f"{eta:.0f} s" if isinstance(eta, int | float) and row["state"] == "running" else "-")
    c4.metric("Backend", row["backend"] or status.get("backend") or "-")
    if total:
        st.progress(min(1.0, step / total))
    if status.get("message"):
        st.caption(status["message"])
    losses = [{"step": c["step"], "loss": c["loss"]} for c in d.curve if c.get("loss") is not None]
    if losses:
        st.line_chart(losses, x="step", y="loss")
    if row["state"] == "failed":
        st.error(row.get("error") or status.get("error") or "failed")
        if row.get("hint") or status.get("hint"):
            st.info(row.get("hint") or status.get("hint"))
    if row["state"] in ("queued", "running") and st.button("Cancel run", key=f"cancel_{run_id}"):
        require_actor()
        r = run(wb.cancel_run, run_id)
        if r:
            st.warning("Stopping after the current step; the adapter saved so far is kept.")
    if row["metrics"]:
        st.json(row["metrics"], expanded=False)
    with st.expander("Log tail"):
        st.code(d.log_tail or "", language="text")


listed_state = next(r["state"] for r in listed if r["run_id"] == pick)


def follow(run_id: str) -> None:
    """Redrawn every 3 s while the run is live; when its state changes (queued → running →
    finished) the whole page reruns, so the run list and its picker show the new state."""
    state = next((r["state"] for r in wb.runs().runs if r["run_id"] == run_id), listed_state)
    if state != listed_state:
        st.rerun(scope="app")
    show_run(run_id)


if listed_state in ("queued", "running"):
    st.fragment(run_every=3)(follow)(pick)
else:
    show_run(pick)
