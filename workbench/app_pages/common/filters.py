"""The list filter bar (status, source, tag, flag reason, reviewer, text) shared by Browse and Review."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench.app_pages.common.session import _wb, get_wb, store_path


@st.cache_data(ttl=10, show_spinner=False)
def filter_options(path: str) -> tuple[list[str], list[str]]:
    """Source names and flag reasons for the filter choices: read at most every 10 s per store,
    not on every rerun (they change only when a file is imported or a stage runs)."""
    wb = _wb(path)
    sources: Any = wb.sources()
    return sorted({s["name"] for s in sources}), wb.store.flag_reasons()


def filter_bar(prefix: str, *, default_status: str = "any", tags: list[str] | None = None) -> dict[str, Any]:
    """Status, source, tag, flag reason, reviewer and text filters; returns the non-empty ones.
    `tags`: the configured tag list, when the page already has it."""
    from workbench.store import STATUSES

    wb = get_wb()
    c1, c2, c3, c4, c5, c6 = st.columns([1.4, 1.8, 1.3, 1.6, 1.2, 1.9])
    statuses = ["any", *STATUSES]
    status = c1.selectbox("Status", statuses, index=statuses.index(default_status), key=f"{prefix}_status")
    source_names, reasons = filter_options(store_path())
    source = c2.selectbox("Source", ["any", *source_names], key=f"{prefix}_source")
    tags = wb.review_tags() if tags is None else tags
    tag = c3.selectbox("Tag", tags, index=None, placeholder="any", accept_new_options=True, key=f"{prefix}_tag")
    flag = c4.selectbox(
        "Flag reason", reasons, index=None, placeholder="any", accept_new_options=True, key=f"{prefix}_flag"
    )
    reviewer = c5.text_input("Touched by", key=f"{prefix}_reviewer", help="reviewer name in the history")
    text = c6.text_input("Text contains", key=f"{prefix}_text")
    raw = {
        "status": None if status == "any" else status,
        "source": None if source == "any" else source,
        "tag": tag,
        "flag": flag,
        "reviewer": reviewer.strip() or None,
        "text": text or None,
    }
    return {k: v for k, v in raw.items() if v}
