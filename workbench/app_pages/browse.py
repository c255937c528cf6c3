"""Browse: a server-side paged table of conversations with filters, and a conversation viewer."""

from __future__ import annotations

import streamlit as st

from workbench.app_pages.common import get_wb, md_escape, render_conversation, run
from workbench.store import STATUSES

PAGE_SIZE = 25
COUNT_LIMIT = 1000  # count at most this many matches per page view ("1,000+")

wb = get_wb()
st.title("Browse")
c1, c2, c3, c4 = st.columns([1, 2, 2, 1])
status = c1.selectbox("Status", ["any", *STATUSES])
sources = ["any", *sorted({s["name"] for s in wb.sources()})]
source = c2.selectbox("Source", sources)
text = c3.text_input("Text contains")
flag = c4.text_input("Flag reason")
filters = {
    "status": None if status == "any" else status,
    "source": None if source == "any" else source,
    "text": text or None,
    "flag": flag or None,
}
key = repr(filters)
if st.session_state.get("browse_key") != key:
    st.session_state["browse_key"] = key
    st.session_state["browse_page"] = 0
    st.session_state["browse_cursors"] = [None]  # keyset cursor of each page seen so far
page = st.session_state.get("browse_page", 0)
cursors = st.session_state.setdefault("browse_cursors", [None])
res = wb.list(**filters, limit=PAGE_SIZE, after=cursors[page], count_limit=COUNT_LIMIT)
total = res.total
if res.total_capped:
    st.caption(f"{total:,}+ conversations · page {page + 1}")
else:
    st.caption(f"{total:,} conversations · page {page + 1} of {max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)}")
rows = [
    {
        "id": c["id"],
        "status": c["status"],
        "rev": c["revision"],
        "turns": c["messages"],
        "preview": (c["preview"] or "")[:120],
    }
    for c in res.conversations
]
event = st.dataframe(rows, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row")
b1, b2, _ = st.columns([1, 1, 6])
if b1.button("◀ Previous", disabled=page == 0):
    st.session_state["browse_page"] = page - 1
    st.rerun()
if b2.button("Next ▶", disabled=res.next_after is None):
    del cursors[page + 1 :]
    cursors.append(res.next_after)
    st.session_state["browse_page"] = page + 1
    st.rerun()

selected = None
sel = getattr(event, "selection", None)
if sel and sel.get("rows"):
    selected = rows[sel["rows"][0]]["id"]
selected = st.text_input("Conversation id", value=selected or st.session_state.get("browse_selected", ""))
if selected:
    st.session_state["browse_selected"] = selected
    d = run(wb.show, selected)
    if d:
        st.subheader(md_escape(f"Conversation {d.id} · {d.status} · revision {d.revision}"))
        render_conversation(d)
