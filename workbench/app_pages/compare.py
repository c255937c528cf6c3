"""Compare: runs grouped by version with their metrics, charts across versions, and per-example
answers side by side (reference / base / tuned), filterable to regressions."""

from __future__ import annotations

import streamlit as st

from workbench.app_pages import ship_ui
from workbench.app_pages.attribution_section import render as render_attribution
from workbench.app_pages.common import get_wb, md_escape, run

wb = get_wb()
st.title("Compare")
listed = wb.runs().runs
if not listed:
    st.caption("No training runs yet: start one on the Train page or with `sift train VERSION`.")
    st.stop()

METRICS = ("exact_match", "token_f1", "rouge_l", "json_valid", "json_field_accuracy")


def flat(r: dict) -> dict:
    m = r["metrics"] or {}
    row = {
        "version": r["version"],
        "run": r["run_id"],
        "recipe": r.get("recipe"),
        "state": r["state"],
        "base model": r["base_model"],
        "eval loss": m.get("eval_loss"),
        "perplexity": m.get("perplexity"),
        "train loss": m.get("train_loss"),
    }
    for side in ("base", "tuned"):
        for k in METRICS:
            row[f"{side} {k}"] = (m.get(side) or {}).get(k)
    # The same metrics on a shared held-out version (trainer config `extra_eval`, e.g. a gold set).
    extra = m.get("extra_eval") or {}
    row["extra eval"] = extra.get("version")
    row["extra eval loss"] = extra.get("eval_loss")
    for k in METRICS:
        row[f"extra tuned {k}"] = (extra.get("tuned") or {}).get(k)
    return row


rows = sorted((flat(r) for r in listed), key=lambda x: (x["version"], x["run"]))
held_out = [r for r in rows if r["extra eval"]]
if held_out:
    # Each version's own eval split differs (and a leaky one flatters its run): the shared one is comparable.
    st.subheader("On a shared held-out version")
    st.caption("Runs scored on the same items (trainer config `extra_eval`), beside their own eval split.")
    own, shared = "tuned json_field_accuracy", "extra tuned json_field_accuracy"
    st.dataframe(
        [
            {
                "version": r["version"],
                "run": r["run"],
                "recipe": r["recipe"],
                "held-out version": r["extra eval"],
                "held-out field accuracy": r[shared],
                "own eval field accuracy": r[own],
                "own minus held-out": None if r[own] is None or r[shared] is None else round(r[own] - r[shared], 4),
                "held-out eval loss": r["extra eval loss"],
                "own eval loss": r["eval loss"],
            }
            for r in held_out
        ],
        hide_index=True,
        width="stretch",
    )
# Attribution: per curation step, what the version without it scores (own module: `sift ablate`).
render_attribution(wb)
st.subheader("Runs by version")
st.dataframe(rows, hide_index=True, width="stretch")

# Issue 20: gate verdicts, forgetting, memorisation, checkpoint curves and sweeps.
ship_ui.compare_sections(listed)

done = [r for r in rows if r["state"] == "succeeded"]
if done:
    options = ["eval loss", "perplexity", *[f"tuned {k}" for k in METRICS]]
    first = 0
    if any(r["extra eval"] for r in done):  # runs scored on the same held-out items: chart that first
        options += [f"extra tuned {k}" for k in METRICS]
        first = options.index("extra tuned json_field_accuracy")
    metric = st.selectbox("Chart", options, index=first, key="cmp_metric")
    chart = [{"run": r["run"], "version": r["version"], metric: r[metric]} for r in done if r[metric] is not None]
    if chart:
        st.bar_chart(chart, x="run", y=metric, color="version")

st.subheader("Side by side")
ids = [r["run"] for r in done]
picked = st.multiselect("Runs", ids, default=ids[-1:], key="cmp_runs")
only_reg = st.checkbox("Only regressions (tuned worse than base)", key="cmp_regressions")
if picked:
    cmp = run(wb.compare_runs, picked, regressions_only=only_reg)
    if cmp is not None:
        examples = cmp.examples
        st.caption(f"{len(examples)} example(s)")
        if examples:
            idx = st.number_input("Example", min_value=0, max_value=len(examples) - 1, value=0, step=1, key="cmp_idx")
            ex = examples[int(idx)]
            with st.expander("Prompt", expanded=False):
                for m in ex["prompt"] or []:
                    st.caption(m.get("role", ""))
                    st.text(m.get("content") or "")
            cols = st.columns(2 + len(picked))
            cols[0].markdown("**reference**")
            cols[0].text(ex["reference"])
            cols[1].markdown("**base**")
            cols[1].text(ex["base"] or "")
            for c, rid in zip(cols[2:], picked, strict=False):
                c.markdown(f"**{md_escape(rid)}**" + (" · regression" if rid in ex["regressed_in"] else ""))
                c.text(ex["tuned"].get(rid, ""))
                scores = (ex["scores"].get(rid) or {}).get("tuned") or {}
                c.caption(md_escape(", ".join(f"{k} {v:.2f}" for k, v in scores.items())))

# Function calling: the eval split's tool-call turns, scored on the calls themselves.
with_calls = [r for r in listed if (r["metrics"] or {}).get("tool_calls")]
if with_calls:
    st.subheader("Tool calls")
    st.caption(
        "Each assistant turn of the eval split that calls a tool, generated from its history: function name "
        "exact, arguments JSON-equal, and the share of reference arguments with an equal value."
    )
    tool_rows = []
    for r in sorted(with_calls, key=lambda x: (x["version"], x["run_id"])):
        tc = r["metrics"]["tool_calls"]
        row = {"version": r["version"], "run": r["run_id"], "tool-call turns": tc.get("n")}
        for side in ("base", "tuned"):
            s = tc.get(side) or {}
            row[f"{side} name"] = s.get("tool_name_accuracy")
            row[f"{side} arguments exact"] = s.get("tool_args_exact")
            row[f"{side} per argument"] = s.get("tool_arg_accuracy")
        tool_rows.append(row)
    st.dataframe(tool_rows, hide_index=True, width="stretch")
