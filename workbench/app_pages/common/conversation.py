"""Conversations as chat bubbles, their flags highlighted inline, and revision diffs; all data shown as
text (`st.text`/`st.code`) or escaped markdown."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from curation.revision_diff import TurnChange
from workbench.app_pages.common.safe_text import md_escape
from workbench.services.core import ConversationView

ROLE_AVATAR = {"user": "user", "assistant": "assistant", "system": ":material/settings:", "tool": ":material/build:"}


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


def render_conversation(d: ConversationView, *, show_meta: bool = True) -> None:
    """Chat bubbles with their flags inline, then provenance and history of a conversation from
    `wb.show()`."""
    per_turn, general = split_flags(d.flags, len(d.messages))
    for f in general:
        flag_notice(f)
    for i, m in enumerate(d.messages):
        render_message(m, flags=per_turn.get(i, []))
    if not show_meta:
        return
    if d.tools:
        with st.expander(f"tools ({len(d.tools)})"):
            st.code(json.dumps(d.tools, indent=2, ensure_ascii=False), language="json")
    with st.expander(f"provenance ({len(d.provenance)} source rows)"):
        st.dataframe(d.provenance, hide_index=True, width="stretch")
    with st.expander(f"history ({len(d.history)} entries)"):
        st.dataframe(
            [{k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in h.items()} for h in d.history],
            hide_index=True,
            width="stretch",
        )


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
        st.error(body, icon=":material/block:")
    else:
        st.warning(body, icon=":material/warning:")


def render_diff(changes: list[TurnChange]) -> None:
    """Turn-by-turn changes from `wb.revision_diff()`: a changed turn as its text before and
    after side by side, the words that differ highlighted (escaped markdown, wrapped), then the
    line diff (shown as code: text)."""
    from curation.dedup import word_diff

    same = sum(1 for c in changes if c.op == "equal")
    for c in changes:
        if c.op == "equal":
            continue
        where = (c.new_index if c.op != "deleted" else c.old_index) or 0
        st.caption(md_escape(f"turn {where + 1} · {c.role} · {c.op}"))
        if c.op == "changed" and c.old_text is not None and c.new_text is not None:
            before, after = word_diff(c.old_text, c.new_text)
            left, right = st.columns(2)
            left.caption("before (removed words in red)")
            left.markdown(diff_markdown(before, "red") or "(empty)")
            right.caption("after (added words in green)")
            right.markdown(diff_markdown(after, "green") or "(empty)")
        st.code(c.diff or "(only fields other than the text changed)", language="diff", wrap_lines=True)
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
