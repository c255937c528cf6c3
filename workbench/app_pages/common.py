"""What every page shares: the store, the reviewer, safe rendering of conversations."""

from __future__ import annotations

import functools
import json
import math
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    wb = workbench.open(path)
    # A page is a burst of short reads: keep the file open between them (see Database).
    wb.store.db.keep_open_s = float(os.environ.get("SIFT_APP_KEEP_OPEN_S", "2"))
    return wb


def get_wb() -> Workbench:
    """The workbench over $SIFT_STORE; it holds no connection, so the CLI can use the file too.

    Every page starts with this call, so it carries the one sign-in rule: with a reviewer list or
    OIDC, a visitor who has not signed in gets no further (no store read, no server file, no
    outbound call). With names only, the store may be read before a name is typed; anything that
    writes, reads another server file or calls out goes through `require_actor()` first."""
    if auth_mode() != "name" and current_actor() is None:
        st.info("Sign in in the sidebar to use Sift.")
        st.stop()
    return _wb(store_path())


def secrets_mapping() -> Mapping[str, Any] | None:
    """`.streamlit/secrets.toml` as a mapping, or None when there is none."""
    try:
        return st.secrets.to_dict() if len(st.secrets) else None
    except Exception:  # no secrets file at all
        return None


def current_actor() -> str | None:
    """Who is acting: the OIDC user, a signed-in listed reviewer, or the typed name (in that order
    of what the store is configured for); None until they identify."""
    mode = auth_mode()
    if mode == "oidc":
        return oidc_user()
    name = st.session_state.get("reviewer")
    if mode == "password" and (not name or st.session_state.get("reviewer_verified") != name):
        return None
    return name.strip() if isinstance(name, str) and name.strip() else None


def require_actor() -> str:
    """The reviewer's name; stops the page with a notice when nobody has identified."""
    name = current_actor()
    if name is None:
        st.warning(
            "Sign in in the sidebar before changing anything."
            if auth_mode() != "name"
            else "Enter your reviewer name in the sidebar before changing anything."
        )
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
        st.error(md_escape(str(e)))  # messages quote names, paths and ids: data
        return None


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Call a service for its effect; a domain error becomes st.error and False."""
    try:
        fn(*args, **kwargs)
    except domain_errors() as e:
        st.error(md_escape(str(e)))
        return False
    return True


def message_text(m: dict[str, Any]) -> str:
    content = m.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text") or f"[{p.get('type')}]" for p in content)


def render_message(m: dict[str, Any], *, flags: list[dict[str, Any]] | tuple[()] = ()) -> None:
    """One turn as a chat bubble with the flags that point at it. Data is shown as text: st.text
    never interprets markup; highlighted text goes through md_escape, so it cannot either."""
    with st.chat_message(m["role"], avatar=ROLE_AVATAR.get(m["role"])):
        label = m["role"] + (f" · {m['name']}" if m.get("name") else "")
        st.caption(md_escape(label))  # a message's name is data
        spans = [s for f in flags for s in flag_spans(f)]
        if m.get("reasoning"):
            with st.expander("reasoning"):
                st.text(m["reasoning"])
        text = message_text(m)
        content_spans = [s for s in spans if s.field == "content" and 0 <= s.start < s.end <= len(text)]
        if text and content_spans and isinstance(m.get("content"), str):
            st.markdown(highlight_markdown(text, content_spans))
        elif text:
            st.text(text)
        for c in m.get("tool_calls") or []:
            st.code(f"{c['name']}({c['arguments']})", language="json")
        if m.get("tool_call_id"):
            st.caption(md_escape(f"result of call {m['tool_call_id']}"))
        other = [s for s in spans if s not in content_spans]
        if other:
            st.caption(md_escape("; ".join(f"{s.label} in {s.field} (characters {s.start}–{s.end})" for s in other)))
        for f in flags:
            flag_notice(f)


def render_conversation(d: dict[str, Any], *, show_meta: bool = True) -> None:
    """Chat bubbles with their flags inline, then provenance and history of a conversation from
    `wb.show()`."""
    per_turn, general = split_flags(d.get("flags", []), len(d["messages"]))
    for f in general:
        flag_notice(f)
    for i, m in enumerate(d["messages"]):
        render_message(m, flags=per_turn.get(i, []))
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
    """Who is reviewing: OIDC login (when `[auth]` is in the secrets), a signed-in reviewer (when a
    reviewer list exists), or a typed name."""
    mode = auth_mode()
    if mode == "oidc":
        _oidc_sidebar()
    elif mode == "password":
        _password_sidebar()
    else:
        st.sidebar.text_input(
            "Reviewer name", key="reviewer", help="Recorded on every change you make (accept, edit, comment…)."
        )
    if current_actor() is not None:  # a server path: not for visitors
        st.sidebar.caption(f"Store: {md_escape(store_path())}")


# ---------------------------------------------------------------- who is reviewing


def oidc_providers() -> list[str] | None:
    """None when Streamlit's OIDC login is not configured; else the named providers ([] = the
    single provider configured directly under [auth])."""
    try:
        auth = st.secrets.get("auth") if "auth" in st.secrets else None
    except Exception:  # no secrets file at all
        return None
    if not isinstance(auth, Mapping):
        return None
    return [k for k, v in auth.items() if isinstance(v, Mapping)]


def reviewer_list_path() -> Path:
    from workbench.reviewers import reviewers_path

    return reviewers_path(store_path())


def auth_mode() -> str:
    """'oidc', 'password' (a reviewer list exists) or 'name' (anyone types a name)."""
    if oidc_providers() is not None:
        return "oidc"
    return "password" if reviewer_list_path().exists() else "name"


def oidc_user() -> str | None:
    user = st.user
    if not user.get("is_logged_in"):
        return None
    name = user.get("email") or user.get("name") or user.get("sub")
    return str(name) if name else None


def _oidc_sidebar() -> None:
    name = oidc_user()
    if name:
        st.session_state["reviewer"] = name
        st.sidebar.success(md_escape(f"Signed in as {name}"), icon="👤")
        if st.sidebar.button("Log out"):
            st.logout()
        return
    providers: list[str | None] = [*(oidc_providers() or [])] or [None]
    for p in providers:
        if st.sidebar.button(f"Log in with {p}" if p else "Log in", type="primary", key=f"login_{p}"):
            st.login(p) if p else st.login()


def _password_sidebar() -> None:
    from workbench.reviewers import THROTTLE, ReviewerConfigError, authenticate

    name = st.session_state.get("reviewer")
    if name and st.session_state.get("reviewer_verified") == name:
        st.sidebar.success(md_escape(f"Signed in as {name}"), icon="👤")
        if st.sidebar.button("Sign out"):
            for k in ("reviewer", "reviewer_verified", "reviewer_admin"):
                st.session_state.pop(k, None)
            st.rerun()
        return
    with st.sidebar.form("sign_in"):
        who = st.text_input("Reviewer name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        # Failures are counted per name and per client address for the whole server (not this
        # session): after a few, both are locked for longer and longer, and nothing is checked.
        keys = THROTTLE.keys(who, client_address())
        wait = THROTTLE.wait_s(keys)
        if wait > 0:
            st.sidebar.error(f"Too many failed sign-ins: try again in {math.ceil(wait)} s.")
            return
        try:
            reviewer = authenticate(reviewer_list_path(), who.strip(), password)
        except ReviewerConfigError as e:
            st.sidebar.error(md_escape(str(e)))
            return
        if reviewer is None:
            THROTTLE.failed(keys)
            st.session_state["sign_in_failures"] = st.session_state.get("sign_in_failures", 0) + 1
            st.sidebar.error("Unknown reviewer or wrong password.")
            return
        THROTTLE.succeeded(keys[0])
        st.session_state.update(
            reviewer=reviewer.name, reviewer_verified=reviewer.name, reviewer_admin=reviewer.admin, sign_in_failures=0
        )
        st.rerun()


def client_address() -> str | None:
    """The browser's address as the server sees it (None in tests without a server)."""
    try:
        ip = st.context.ip_address
    except Exception:  # an older Streamlit or no request context
        return None
    return ip if isinstance(ip, str) and ip else None


def may_configure() -> bool:
    """Whether the current reviewer may change the store's review guide and lists: anyone
    identified, except that a reviewer list reserves it to its admins."""
    if current_actor() is None:
        return False
    return auth_mode() != "password" or bool(st.session_state.get("reviewer_admin"))


# ---------------------------------------------------------------- data as text, with highlights

_ESCAPE = frozenset(string.punctuation)


def md_escape(text: str, *, at_line_start: bool = True) -> str:
    """Text that st.markdown shows exactly as written: every ASCII punctuation character is
    backslash-escaped (so no link, image, HTML, math, directive or emphasis can form), spaces that
    start a line become no-break spaces (no code block) and each line break is kept.
    `at_line_start=False` for a piece that continues a line."""
    out = []
    for i, line in enumerate(text.split("\n")):
        body = line.lstrip(" \t") if (i > 0 or at_line_start) else line
        lead = line[: len(line) - len(body)].replace("\t", "    ").replace(" ", "\u00a0")
        out.append(lead + "".join("\\" + ch if ch in _ESCAPE else ch for ch in body))
    return "  \n".join(out)


@dataclass(frozen=True, slots=True)
class FlagSpan:
    """A highlighted stretch of one field of one turn (character offsets into that field)."""

    message_index: int
    field: str
    start: int
    end: int
    label: str


def flag_spans(flag: Mapping[str, Any]) -> list[FlagSpan]:
    """The spans a flag points at. A stage puts them in the flag's details, either as one span
    (`message_index`, `start`, `end`, optional `field` and `entity`) or as a list under `spans` or
    `findings` (e.g. PII `Finding.to_dict()`s)."""
    d = flag.get("details")
    if not isinstance(d, Mapping):
        return []
    items = d.get("spans") or d.get("findings") or [d]
    out = []
    for it in items if isinstance(items, list) else []:
        if not isinstance(it, Mapping):
            continue
        mi = it.get("message_index", it.get("message"))
        start, end = it.get("start"), it.get("end")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (mi, start, end)):
            continue
        label = str(it.get("entity") or it.get("label") or flag.get("reason") or "flag")
        out.append(FlagSpan(mi, str(it.get("field") or "content"), start, end, label))  # type: ignore[arg-type]
    return out


def flag_turn(flag: Mapping[str, Any]) -> int | None:
    """The turn a flag is about (from its details or its first span), or None for the whole
    conversation."""
    d = flag.get("details")
    if isinstance(d, Mapping):
        mi = d.get("message_index", d.get("message"))
        if isinstance(mi, int) and not isinstance(mi, bool):
            return mi
    spans = flag_spans(flag)
    return spans[0].message_index if spans and all(s.message_index == spans[0].message_index for s in spans) else None


def split_flags(
    flags: list[dict[str, Any]], n_turns: int
) -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Flags per turn they point at, and the flags about the whole conversation. A flag whose spans
    lie in several turns is shown at each of them, with only that turn's spans."""
    per_turn: dict[int, list[dict[str, Any]]] = {}
    general: list[dict[str, Any]] = []
    for f in flags:
        spans = flag_spans(f)
        turns = sorted({s.message_index for s in spans if 0 <= s.message_index < n_turns})
        if len(turns) > 1:
            for t in turns:
                mine = [
                    {
                        "message_index": s.message_index,
                        "field": s.field,
                        "start": s.start,
                        "end": s.end,
                        "entity": s.label,
                    }
                    for s in spans
                    if s.message_index == t
                ]
                per_turn.setdefault(t, []).append({**f, "details": {"spans": mine}})
            continue
        turn = flag_turn(f)
        if turn is not None and 0 <= turn < n_turns:
            per_turn.setdefault(turn, []).append(f)
        else:
            general.append(f)
    return per_turn, general


def highlight_markdown(text: str, spans: list[FlagSpan]) -> str:
    """`text` as escaped markdown with each span on a coloured background, its label after it.
    Overlapping spans are merged; a span over a line break is highlighted line by line."""
    merged: list[list[Any]] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and s.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], s.end)
            if s.label not in merged[-1][2]:
                merged[-1][2].append(s.label)
        else:
            merged.append([s.start, s.end, [s.label]])
    out: list[str] = []
    pos = 0

    def starts_line(i: int) -> bool:
        return i == 0 or text[i - 1] == "\n"

    for start, end, labels in merged:
        out.append(md_escape(text[pos:start], at_line_start=starts_line(pos)))
        pieces = text[start:end].split("\n")
        out.append(
            "  \n".join(
                f":orange-background[{md_escape(p, at_line_start=k > 0 or starts_line(start))}]"
                if p.strip()
                else md_escape(p)
                for k, p in enumerate(pieces)
            )
        )
        out.append(f" :orange-badge[{md_escape(', '.join(labels))}]")
        pos = end
    out.append(md_escape(text[pos:], at_line_start=starts_line(pos)))
    return "".join(out)


def flag_notice(f: Mapping[str, Any]) -> None:
    body = md_escape(f"{f.get('stage', '')} · {f['reason']}: {f['message']}".lstrip(" ·"))
    if f.get("severity") == "error":
        st.error(body, icon="⛔")
    else:
        st.warning(body, icon="⚠️")


@functools.lru_cache(maxsize=32)
def safe_guide_markdown(md: str) -> str:
    """A review guide as markdown that loads nothing: raw HTML and images are escaped outside code
    (an image becomes a plain link to its address). If a check of the result still finds an image
    or HTML, the whole guide is shown escaped, as text."""
    out: list[str] = []
    fence: str | None = None
    for line in md.split("\n"):
        stripped = line.lstrip(" ")
        if fence is not None:
            out.append(line)
            if stripped.startswith(fence) and not stripped[len(fence) :].strip(fence[0]).strip():
                fence = None
            continue
        if stripped[:3] in ("```", "~~~") and len(line) - len(stripped) < 4:
            char = stripped[0]
            fence = stripped[: len(stripped) - len(stripped.lstrip(char))]
            out.append(line)
            continue
        out.append(_escape_outside_code_spans(line))
    result = "\n".join(out)
    return result if _loads_nothing(result) else md_escape(md)


def _escape_outside_code_spans(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "`":
            j = i
            while j < len(line) and line[j] == "`":
                j += 1
            ticks = line[i:j]
            k = line.find(ticks, j)
            while k != -1 and (line[k + len(ticks) : k + len(ticks) + 1] == "`" or line[k - 1] == "`"):
                k = line.find(ticks, k + 1)
            if k == -1:
                out.append(ticks)
                i = j
            else:
                out.append(line[i : k + len(ticks)])
                i = k + len(ticks)
            continue
        if ch == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if ch == "<" or (ch == "!" and line[i + 1 : i + 2] == "["):
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _loads_nothing(md: str) -> bool:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).parse(md)
    stack = list(tokens)
    while stack:
        t = stack.pop()
        if t.type in ("image", "html_inline", "html_block"):
            return False
        stack.extend(t.children or [])
    return True


# ---------------------------------------------------------------- filters and diffs


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
    c1, c2, c3, c4, c5, c6 = st.columns([1, 2, 1.4, 1.6, 1.2, 2])
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


def render_diff(changes: list[dict[str, Any]]) -> None:
    """Turn-by-turn changes from `wb.revision_diff()`, each as a line diff (shown as code: text)."""
    same = sum(1 for c in changes if c["op"] == "equal")
    for c in changes:
        if c["op"] == "equal":
            continue
        where = c["new_index"] if c["op"] != "deleted" else c["old_index"]
        st.caption(f"turn {where + 1} · {c['role']} · {c['op']}")
        st.code(c["diff"] or "(only fields other than the text changed)", language="diff")
    if same:
        st.caption(f"{same} turn{'s' if same != 1 else ''} unchanged")


def diff_markdown(runs: list[tuple[str, bool]], color: str = "red") -> str:
    """(text, differs) runs (e.g. `curation.dedup.word_diff`) as escaped markdown, the differing
    runs on a coloured background, line by line."""
    out: list[str] = []
    at_start = True
    for text, differs in runs:
        lines = text.split("\n")
        parts = []
        for k, line in enumerate(lines):
            first = at_start if k == 0 else True
            body = line.rstrip()
            tail = line[len(body) :]
            if differs and body.strip():
                lead = body[: len(body) - len(body.lstrip())]
                parts.append(
                    md_escape(lead, at_line_start=first)
                    + f":{color}-background[{md_escape(body.lstrip(), at_line_start=False)}]"
                    + tail
                )
            else:
                parts.append(md_escape(body, at_line_start=first) + tail)
        out.append("  \n".join(parts))
        at_start = text.endswith("\n")
    return "".join(out)
