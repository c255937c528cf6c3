"""Progress: how far the review is — counts by status, by reviewer and by flag, and reviewing
actions over time. Every figure is an aggregate computed in the store."""

from __future__ import annotations

import streamlit as st

from workbench.app_pages.common import get_wb, run

wb = get_wb()
st.title("Progress")
bucket = st.segmented_control("Throughput per", ["hour", "day", "week"], default="day", key="pg_bucket") or "day"
p = run(wb.progress, bucket=bucket)
if p is None:
    st.stop()

by_status = p.by_status
total = sum(by_status.values())
reviewed = total - by_status["pending"]
c = st.columns(4)
c[0].metric("Conversations", f"{total:,}")
c[1].metric("Pending", f"{by_status['pending']:,}")
c[2].metric("Accepted", f"{by_status['accepted']:,}")
c[3].metric("Rejected", f"{by_status['rejected']:,}")
st.progress(reviewed / total if total else 0.0, text=f"{reviewed:,} of {total:,} reviewed")

st.subheader("By reviewer")
if p.reviewers:
    st.dataframe(p.reviewers, hide_index=True, width="stretch")
else:
    st.caption("Nobody has reviewed anything yet.")

st.subheader("By flag")
if p.flags:
    st.caption("Conversations flagged at their current revision, and where their review stands.")
    st.dataframe(p.flags, hide_index=True, width="stretch")
else:
    st.caption("No flags yet: run Validate, Dedup or PII to get some.")

st.subheader(f"Throughput per {bucket}")
if p.throughput:
    per_bucket: dict[tuple[str, str], int] = {}
    for r in p.throughput:
        key = (r["at"][:16].replace("T", " "), r["reviewer"])
        per_bucket[key] = per_bucket.get(key, 0) + r["n"]
    st.bar_chart(
        [{"time": t, "reviewer": who, "actions": n} for (t, who), n in sorted(per_bucket.items())],
        x="time",
        y="actions",
        color="reviewer",
    )
    totals: dict[str, int] = {}
    for r in p.throughput:
        totals[r["action"]] = totals.get(r["action"], 0) + r["n"]
    st.caption(
        "Actions: "
        + ", ".join(f"{n:,} {a}" for a, n in sorted(totals.items()))
        + " (a bulk action counts once per conversation it changed)."
    )
else:
    st.caption("No reviewing actions yet.")
