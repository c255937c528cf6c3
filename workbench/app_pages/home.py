"""Home: the steps from import to compare with live counts, what keeps rows out of a version, and
the next thing to do as a button."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from workbench.app_pages.common import current_actor, get_wb, md_escape, page_link, run

wb = get_wb()
st.title("Home")
st.caption(
    "Sift takes chat data from import to a trained adapter: curate it, review it, freeze a version, "
    "train on it and compare. Each step below says where the data stands; the button opens the next one."
)
if current_actor() is None:
    st.info("Identify yourself in the sidebar: every change is recorded with your name.", icon=":material/badge:")

p = run(wb.pipeline)
if p is not None:
    nxt = p.next
    c1, c2 = st.columns([3, 2], vertical_alignment="center")
    c1.markdown(f"**Next: {md_escape(nxt.title, at_line_start=False)}** — {md_escape(nxt.why, at_line_start=False)}")
    if c2.button(f"Go to {nxt.title} →", type="primary", key="home_next"):
        try:
            st.switch_page(f"workbench/app_pages/{'import_page' if nxt.page == 'import' else nxt.page}.py")
        except StreamlitAPIException:  # the page runs alone (no navigation): a link does it
            page_link(nxt.page, f"Open {nxt.title}", c2)

    st.subheader("The pipeline")
    for i, s in enumerate(p.steps, 1):
        with st.container(border=True):
            a, b, c = st.columns([0.4, 5, 1.4], vertical_alignment="center")
            a.markdown(
                ":material/check_circle:"
                if s.done
                else (":material/arrow_forward:" if s.step == nxt.step else ":material/radio_button_unchecked:")
            )
            b.markdown(f"**{i}. {md_escape(s.title, at_line_start=False)}**")
            b.caption(md_escape(s.summary))
            page_link(s.page, f"Open {s.title}", c)

    st.subheader("What keeps conversations out of a version")
    if p.blockers:
        st.dataframe(
            [{"conversations": b.conversations, "reason": b.reason, "what": b.what} for b in p.blockers],
            hide_index=True,
            width="stretch",
        )
    elif p.steps[0].counts["conversations"] == 0:
        st.info("Nothing yet: import some conversations first.")
    else:
        st.success("Nothing: every conversation is reviewed and checked.")
    if p.warnings:
        st.caption(md_escape("Warnings (do not block): " + ", ".join(f"{r} {n:,}" for r, n in p.warnings.items())))
