"""Hypothesis round trips: record → dialect file → record gives the same conversation."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from curation.formats import parse_file, to_dialect
from curation.records import Conversation, Message, ToolCall, canonical_json

text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
ident = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
args = st.dictionaries(ident, st.integers() | text, max_size=3).map(canonical_json)


@st.composite
def pairs(draw, system: bool = True) -> Conversation:
    msgs: list[Message] = []
    if system and draw(st.booleans()):
        msgs.append(Message("system", draw(text)))
    for _ in range(draw(st.integers(1, 3))):
        msgs += [Message("user", draw(text)), Message("assistant", draw(text))]
    return Conversation(tuple(msgs))


@st.composite
def with_tools(draw) -> Conversation:
    conv = draw(pairs())
    msgs = list(conv.messages)
    name = draw(ident)
    call = ToolCall(name, draw(args), draw(st.none() | ident.map(lambda s: "call_" + s)))
    msgs[-1:-1] = [Message("assistant", None, tool_calls=(call,)), Message("tool", draw(text), tool_call_id=call.id)]
    tools = ({"type": "function", "function": {"name": name, "parameters": {"type": "object"}}},)
    return Conversation(tuple(msgs), tools)


def roundtrip(conv: Conversation, dialect: str, suffix: str) -> Conversation:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"x{suffix}"
        row = to_dialect(conv, dialect)
        if suffix == ".jsonl":
            p.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            p.write_text(json.dumps([row], ensure_ascii=False, indent=1), encoding="utf-8")
        pf = parse_file(p, dialect)
        assert not pf.quarantined, pf.quarantined
        return pf.mapped[0].conversation


@settings(max_examples=60, deadline=None)
@given(with_tools() | pairs())
def test_openai_roundtrip(conv: Conversation) -> None:
    back = roundtrip(conv, "openai", ".jsonl")
    assert back.id == conv.id and back.messages == conv.messages


@settings(max_examples=60, deadline=None)
@given(pairs())
def test_sharegpt_roundtrip(conv: Conversation) -> None:
    back = roundtrip(conv, "sharegpt", ".json")
    assert back.messages == conv.messages


@settings(max_examples=40, deadline=None)
@given(with_tools())
def test_sharegpt_roundtrip_tool_calls_without_ids(conv: Conversation) -> None:
    back = roundtrip(conv, "sharegpt", ".json")
    # ShareGPT has no call ids: everything else survives.
    strip = [
        Message(m.role, m.content, m.name, tuple(ToolCall(c.name, c.arguments) for c in m.tool_calls))
        for m in conv.messages
    ]
    assert list(back.messages) == strip and back.tools == conv.tools


@settings(max_examples=60, deadline=None)
@given(pairs())
def test_alpaca_roundtrip(conv: Conversation) -> None:
    back = roundtrip(conv, "alpaca", ".json")
    assert back.messages == conv.messages


@given(pairs())
def test_content_id_ignores_metadata(conv: Conversation) -> None:
    other = Conversation(conv.messages, conv.tools, {"anything": 1})
    assert other.id == conv.id and Conversation.from_json(json.dumps(other.to_dict())) == other
