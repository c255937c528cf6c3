"""Conversations written back out as OpenAI, ShareGPT or Alpaca rows."""

from __future__ import annotations

import json
from typing import Any

from curation.errors import SiftError
from curation.records import Conversation

# ---------------------------------------------------------------- writers


class WriteError(SiftError, ValueError):
    """A conversation cannot be expressed in the requested dialect."""


def _args_value(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def to_openai(conv: Conversation) -> dict[str, Any]:
    msgs = [m.to_openai() for m in conv.messages]
    out: dict[str, Any] = {"messages": msgs}
    if conv.tools:
        out["tools"] = list(conv.tools)
    return out


def to_sharegpt(conv: Conversation) -> dict[str, Any]:
    names = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
    turns = []
    for m in conv.messages:
        if isinstance(m.content, tuple) or m.reasoning is not None:
            raise WriteError("ShareGPT holds text turns only (this one has parts or reasoning)")
        if m.tool_calls:
            if m.content:
                turns.append({"from": "gpt", "value": m.content})
            for c in m.tool_calls:
                value = {"name": c.name, "arguments": _args_value(c.arguments)}
                turns.append({"from": "function_call", "value": json.dumps(value, ensure_ascii=False)})
            continue
        turns.append({"from": names[m.role], "value": m.content or ""})
    out: dict[str, Any] = {"conversations": turns}
    if conv.tools:
        out["tools"] = json.dumps(list(conv.tools), ensure_ascii=False)
    return out


def to_alpaca(conv: Conversation) -> dict[str, Any]:
    msgs = list(conv.messages)
    out: dict[str, Any] = {}
    if msgs and msgs[0].role == "system":
        out["system"] = msgs.pop(0).text
    if len(msgs) < 2 or len(msgs) % 2 or conv.tools:
        raise WriteError("Alpaca holds user/assistant pairs only")
    for i, m in enumerate(msgs):
        want = "user" if i % 2 == 0 else "assistant"
        if m.role != want or m.tool_calls or not isinstance(m.content, str) or m.reasoning is not None:
            raise WriteError("Alpaca holds alternating user/assistant text turns only")
    pairs = [[msgs[i].text, msgs[i + 1].text] for i in range(0, len(msgs) - 2, 2)]
    out["instruction"] = msgs[-2].text
    out["input"] = ""
    out["output"] = msgs[-1].text
    if pairs:
        out["history"] = pairs
    return out


WRITERS = {"openai": to_openai, "sharegpt": to_sharegpt, "alpaca": to_alpaca}


def to_dialect(conv: Conversation, dialect: str) -> dict[str, Any]:
    return WRITERS[dialect](conv)
