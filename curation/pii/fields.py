"""The text fields of a message that can carry PII, by name (`content`, `content[i]`, ...)."""

from __future__ import annotations

import re
from dataclasses import replace

from curation.pii.config import PiiError
from curation.records import ContentPart, Message, ToolCall


def message_fields(m: Message) -> list[tuple[str, str]]:
    """The texts of a message that can carry PII, each with the name of the field it lives in."""
    out: list[tuple[str, str]] = []
    if isinstance(m.content, str):
        if m.content:
            out.append(("content", m.content))
    elif isinstance(m.content, tuple):
        for i, p in enumerate(m.content):
            if p.text:
                out.append((f"content[{i}]", p.text))
    for i, c in enumerate(m.tool_calls):
        if c.arguments:
            out.append((f"tool_calls[{i}].arguments", c.arguments))
    if m.reasoning:
        out.append(("reasoning", m.reasoning))
    if m.name:  # a participant's name or handle (OpenAI `name`): exported with the turn
        out.append(("name", m.name))
    return out


_FIELD_RE = re.compile(r"^(content|reasoning|name)$|^content\[(\d+)\]$|^tool_calls\[(\d+)\]\.arguments$")


def field_text(m: Message, name: str) -> str:
    for f, t in message_fields(m):
        if f == name:
            return t
    raise PiiError(f"message has no field {name!r}")


def with_field(m: Message, name: str, text: str) -> Message:
    """The message with one field's text replaced."""
    match = _FIELD_RE.match(name)
    if not match:
        raise PiiError(f"unknown message field {name!r}")
    if name == "content":
        return replace(m, content=text)
    if name == "reasoning":
        return replace(m, reasoning=text)
    if name == "name":
        return replace(m, name=text)
    if match.group(2) is not None:
        i = int(match.group(2))
        assert isinstance(m.content, tuple)
        parts = list(m.content)
        parts[i] = ContentPart(type=parts[i].type, text=text, data=parts[i].data)
        return replace(m, content=tuple(parts))
    i = int(match.group(3))
    calls = list(m.tool_calls)
    calls[i] = ToolCall(name=calls[i].name, arguments=text, id=calls[i].id)
    return replace(m, tool_calls=tuple(calls))
