"""What every page shares: the store, the reviewer, safe rendering of conversations."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

import workbench
from workbench.services import Workbench

T = TypeVar("T")

ROLE_AVATAR = {"user": "user", "assistant": "assistant", "system": "⚙️", "tool": "🛠️"}


def store_path() -> str:
    return os.environ.get("SIFT_STORE", "sift.duckdb")


@st.cache_resource
def _wb(path: str) -> Workbench:
    return workbench.open(path)


def get_wb() -> Workbench:
    """The workbench over $SIFT_STORE; it holds no connection, so the CLI can use the file too."""
    return _wb(store_path())


def current_actor() -> str | None:
    name = st.session_state.get("reviewer")
    return name.strip() if isinstance(name, str) and name.strip() else None


def require_actor() -> str:
    """The reviewer's name; stops the page with a notice when nobody has identified."""
    name = current_actor()
    if name is None:
        st.warning("Enter your reviewer name in the sidebar before changing anything.")
        st.stop()
    return name  # type: ignore[return-value]


def domain_errors() -> tuple[type[BaseException], ...]:
    from curation.errors import StageError
    from curation.formats import FileReadError, WriteError
    from curation.records import ProvenanceError
    from workbench.store import StoreError

    return (StoreError, FileReadError, WriteError, ProvenanceError, StageError)


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call a service; a domain error becomes st.error and None."""
    try:
        return fn(*args, **kwargs)
    except domain_errors() as e:
        st.error(str(e))
        return None


def message_text(m: dict[str, Any]) -> str:
    content = m.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text") or f"[{p.get('type')}]" for p in content)


def render_message(m: dict[str, Any]) -> None:
    """One turn as a chat bubble. Data is shown as text: st.text never interprets markup."""
    with st.chat_message(m["role"], avatar=ROLE_AVATAR.get(m["role"])):
        label = m["role"] + (f" · {m['name']}" if m.get("name") else "")
        st.caption(label)
        if m.get("reasoning"):
            with st.expander("reasoning"):
                st.text(m["reasoning"])
        text = message_text(m)
        if text:
            st.text(text)
        for c in m.get("tool_calls") or []:
            st.code(f"{c['name']}({c['arguments']})", language="json")
        if m.get("tool_call_id"):
            st.caption(f"result of call {m['tool_call_id']}")


def render_conversation(d: dict[str, Any], *, show_meta: bool = True) -> None:
    """Chat bubbles, then flags, provenance and history of a conversation from `wb.show()`."""
    for f in d.get("flags", []):
        (st.error if f["severity"] == "error" else st.warning)(f"{f['reason']}: {f['message']}")
    for m in d["messages"]:
        render_message(m)
    if not show_meta:
        return
    if d.get("tools"):
        with st.expander(f"tools ({len(d['tools'])})"):
            st.code(json.dumps(d["tools"], indent=2, ensure_ascii=False), language="json")
    with st.expander(f"provenance ({len(d['provenance'])} source rows)"):
        st.dataframe(d["provenance"], hide_index=True, use_container_width=True)
    with st.expander(f"history ({len(d['history'])} entries)"):
        st.dataframe(
            [{k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in h.items()} for h in d["history"]],
            hide_index=True,
            use_container_width=True,
        )


def sidebar() -> None:
    st.sidebar.text_input(
        "Reviewer name", key="reviewer", help="Recorded on every change you make (accept, edit, comment…)."
    )
    st.sidebar.caption(f"Store: `{store_path()}`")
