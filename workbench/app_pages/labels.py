"""Labels: audit the labels that end each answer (a trailing JSON object) against the rest of the
data, and list the suspects with the label the data points to. Deciding is review's job: the
suspects are `label_suspect` flags, filterable on the Review page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.app_pages.common import get_wb, md_escape, require_actor, run

wb = get_wb()
st.title("Labels")
st.caption(
    "For answers that end in a JSON object of labels (category, priority, intent…): a small classifier "
    "reads each row's user turns, trained on the other rows (out of fold), and flags a row when the data "
    "points to another label with the confidence a right label usually gets (confident learning). "
    "A suspect is a question for a reviewer, not a verdict."
)

last = wb.label_audit_summary()
cfg = last.config if last else {}
c1, c2 = st.columns([3, 1])
fields_text = c1.text_input(
    "Label fields",
    value=", ".join(cfg.get("fields") or []),
    help="Comma-separated; empty: every string field most answers' JSON carries with few values",
)
severity = c2.selectbox(
    "Flag severity", ["warning", "error"], index=0 if cfg.get("severity", "warning") == "warning" else 1
)

if st.button("Run label audit", type="primary"):
    actor = require_actor()
    fields = [f.strip() for f in fields_text.split(",") if f.strip()]
    with st.spinner("Scoring every answer's labels…"):
        result = run(wb.label_audit, fields=fields or None, severity=severity, actor=actor)
    if result:
        st.success(f"{result.labelled} labelled answers audited; {result.flagged} flagged label_suspect")
    last = wb.label_audit_summary()

if last is None:
    st.info("The label audit has not run on this store yet.")
    st.stop()

summary = last.summary
m1, m2, m3 = st.columns(3)
m1.metric("Conversations", summary.conversations)
m2.metric("With labels", summary.labelled)
m3.metric("Flagged", summary.flagged)
per_field = summary.per_field
if per_field:
    st.subheader("Per field")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "field": name,
                    "rows": f["rows"],
                    "values": len(f["values"]),
                    "suspects": f["suspects"],
                    "out-of-fold agreement": f["oof_accuracy"],
                }
                for name, f in per_field.items()
            ]
        ),
        hide_index=True,
    )
for name, why in summary.skipped.items():
    st.warning(md_escape(f"{name}: skipped ({why})"))  # field names come from the data

applied = st.session_state.pop("labels_applied", None)
if applied is not None:
    st.success(f"Suggested labels applied to {applied} conversations (a new revision each)")
suspects = wb.label_suspects(limit=2000)
st.subheader(f"Suspects ({len(suspects)})")
if suspects:
    st.dataframe(pd.DataFrame([x.to_dict() for x in suspects]), hide_index=True)
    st.caption(
        "Review them on the Review page with the flag filter `label_suspect`, or `sift list --flag label_suspect`."
    )
    st.subheader("Apply suggestions")
    st.caption(
        "Sets the label to the suggested one: a new revision per conversation (the old one stays in its "
        "history, Lineage shows both); the review status is unchanged."
    )
    ids = sorted({x.id for x in suspects})
    chosen = st.multiselect("Conversations", ids, help="Pick the rows whose suggestion you checked")
    a1, a2 = st.columns(2)
    if a1.button("Apply to the chosen conversations", disabled=not chosen):
        actor = require_actor()
        done = run(wb.apply_label_suggestions, chosen, actor=actor)
        if done:
            st.session_state["labels_applied"] = done.applied
            st.rerun()  # the suspects list above is computed before the change
    if a2.button(f"Apply to all {len(ids)}"):
        actor = require_actor()
        done = run(wb.apply_label_suggestions, None, actor=actor)
        if done:
            st.session_state["labels_applied"] = done.applied
            st.rerun()  # the suspects list above is computed before the change
else:
    st.write("No suspects on the current revisions.")
