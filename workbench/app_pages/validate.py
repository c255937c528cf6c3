"""Validate: run the gate with a target model and length limit; token-length histogram with the
limit drawn, counts per reason, the cutoff preview, and a drill-down showing a conversation's
rendered template text with the tokens that carry loss highlighted (escaped text, never HTML)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from curation.models import DEFAULT_MODEL
from curation.validate import DEFAULT_SEVERITY, REASONS, WARNING
from workbench.app_pages.common import (
    FlagSpan,
    flag_notice,
    get_wb,
    highlight_markdown,
    md_escape,
    page_link,
    render_conversation,
    require_actor,
    run,
)

wb = get_wb()
st.title("Validate")
st.caption(
    "Every conversation is rendered with the target model's own chat template and tokenizer: structure, "
    "template errors, the assistant loss mask and token lengths. Errors block freezing; warnings do not."
)

last = wb.validation_summary()
cfg = last.config if last else {}
c1, c2 = st.columns([3, 1])
model = c1.text_input(
    "Model",
    value=cfg.get("model") or DEFAULT_MODEL,
    help="A Hugging Face id or a local folder; default the embedded SmolLM2",
)
max_seq_len = int(c2.number_input("max_seq_len", min_value=1, value=int(cfg.get("max_seq_len") or 2048), step=256))
policies = ["keep", "fold", "drop"]
system_prompt = st.radio(
    "System prompt",
    policies,
    index=policies.index(cfg.get("system_prompt") or "keep") if (cfg.get("system_prompt") or "keep") in policies else 0,
    horizontal=True,
    help="keep it; fold it into the first user turn (for templates that refuse a system turn, e.g. Gemma); "
    "or drop it. Stored with the run and every version frozen on it; the trainer renders the same way.",
)
warn_default = [
    r
    for r, s in (cfg.get("severity") or {}).items()
    if r in REASONS and s == WARNING and DEFAULT_SEVERITY[r] != WARNING
]
warn = st.multiselect(
    "Checks that only warn",
    options=[r for r in REASONS if DEFAULT_SEVERITY[r] != WARNING],
    default=warn_default,
    help="e.g. over_max_seq_len for a team that keeps long rows and truncates",
)

if st.button("Run validation", type="primary"):
    actor = require_actor()
    bar = st.progress(0.0, text="Loading the tokenizer and template…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"Rendered {done} of {total} new or changed revisions")

    result = run(
        wb.validate,
        model=model.strip() or None,
        max_seq_len=max_seq_len,
        severity={r: WARNING for r in warn},
        system_prompt=system_prompt,
        actor=actor,
        progress=progress,
    )
    bar.progress(1.0, text="Done" if result else "Stopped")
    if result:
        st.success(
            f"{result.checked} conversations checked, {result.passed} passed "
            f"({result.rechecked} rendered now, the rest from earlier runs)"
        )
    last = wb.validation_summary()

if last is None:
    st.info("Validation has not run on this store yet.")
    st.stop()

cfg = last.config
summary = last.summary
limit = int(cfg["max_seq_len"])
m1, m2, m3, m4 = st.columns(4)
m1.metric("Checked", summary.checked)
m2.metric("Passed", summary.passed)
m3.metric("Blocked", summary.checked - summary.passed)
m4.metric(f"Over {limit} tokens", summary.over_max_seq_len)
st.caption(
    md_escape(  # the model path and the reviewer's name are data
        f"Model {cfg['model']} · template sha256 {cfg['template_sha256'][:16]}… · run by {last.actor} "
        f"at {last.finished_at[:19]}"
    )
)

st.subheader("Token lengths")
lengths = wb.validation_token_lengths()
if lengths:
    # One huge outlier would stretch the axis and squash every other bar into one: the axis
    # stops a little past max_seq_len or the 99th percentile, and longer rows sit in the last bar.
    ordered = sorted(lengths)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    top = max(int(limit * 1.1), int(p99 * 1.1), 1)
    beyond = sum(1 for n in lengths if n > top)
    shown = [min(n, top) for n in lengths]
    bars = (
        alt.Chart(pd.DataFrame({"tokens": shown}))
        .mark_bar()
        .encode(
            alt.X("tokens:Q", bin=alt.Bin(maxbins=60, extent=[0, top]), title="tokens per conversation",
                  scale=alt.Scale(domain=[0, top])),
            alt.Y("count()"),
        )
    )  # fmt: skip
    rule = (
        alt.Chart(pd.DataFrame({"max_seq_len": [limit]}))
        .mark_rule(color="red", strokeWidth=2)
        .encode(x="max_seq_len:Q")
    )
    st.altair_chart(bars + rule, width="stretch")
    t = summary.tokens
    st.caption(
        f"total {t.total} · p50 {t.p50} · p90 {t.p90} · p99 {t.p99} · max {t.max} · red line: max_seq_len"
        + (f" · the axis stops at {top}: {beyond} longer conversation(s) are counted in the last bar" if beyond else "")
    )

st.subheader("Problems")
rows: list[dict[str, Any]] = [
    {"severity": sev, "reason": r, "conversations": n, "meaning": REASONS.get(r, "")}
    for sev, counts in (("error", summary.flagged), ("warning", summary.warnings))
    for r, n in counts.items()
]
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.success("No problems found.")

if summary.over_max_seq_len:
    st.subheader("Cutoff preview")
    st.caption("What each way of handling the over-long rows would do to their answers.")
    cut = summary.cutoff
    st.dataframe(
        [
            {"policy": "drop the row", **cut.drop_row.to_dict()},
            {"policy": "drop trailing turns", **cut.drop_trailing_turns.to_dict()},
            {"policy": "cut tokens", **cut.truncate.to_dict()},
        ],
        hide_index=True,
        width="stretch",
    )

st.subheader("Drill-down")
reasons = [r["reason"] for r in rows]
choice = st.selectbox("Reason", ["(any conversation)", *reasons])
listed = wb.list(flag=None if choice == "(any conversation)" else choice, limit=100)
ids = [c["id"] for c in listed.conversations]
cid = st.selectbox(f"Conversation ({listed.total} in all, first 100 shown)", ids) if ids else None
if ids:
    j1, j2, _ = st.columns([1.3, 1.8, 3])
    if cid:
        page_link("review", "Review this one →", j1, id=cid)
    if choice != "(any conversation)":
        page_link("review", f"Review all {listed.total} with {choice} →", j2, flag=choice)
if cid:
    detail = run(
        wb.inspect_validation,
        cid,
        model=cfg["model"],
        max_seq_len=limit,
        severity={r: s for r, s in (cfg.get("severity") or {}).items() if r in REASONS},
    )
    if detail:
        for f in detail.flags:
            flag_notice(f)
        if detail.text is None:
            st.info("The template could not render this conversation, so there are no tokens to show.")
        else:
            a, b, c = st.columns(3)
            a.metric("Tokens", detail.tokens)
            b.metric("Tokens with loss", detail.loss_tokens)
            c.metric("Mask from", detail.mask_source)
            st.markdown("**Rendered template** (highlighted: tokens that carry loss)")
            spans: list[FlagSpan] = []
            pos = 0
            for seg in detail.segments:
                if seg["loss"]:
                    spans.append(FlagSpan(0, "content", pos, pos + len(seg["text"]), "loss"))
                pos += len(seg["text"])
            with st.container(border=True):
                st.markdown(highlight_markdown(detail.text, spans))
            st.dataframe(
                [{"turn": i + 1, "tokens": n} for i, n in enumerate(detail.turn_tokens)],
                hide_index=True,
            )
            with st.expander(f"All {len(detail.token_rows)} tokens"):
                st.dataframe(pd.DataFrame(detail.token_rows), hide_index=True, width="stretch")
        with st.expander("The conversation"):
            d = run(wb.show, cid)
            if d:
                render_conversation(d, show_meta=False)
