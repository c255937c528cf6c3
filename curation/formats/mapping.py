"""Which dialect a row is, and each row mapped to a `Conversation` (or quarantined with its field and
reason); `Plain`, the no-mapping fast path for plain OpenAI text rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from curation.formats.rows import (
    _SURROGATE_ESCAPE,
    FileReadError,
    Mapped,
    ParsedFile,
    Quarantined,
    Row,
    RowError,
    _type_name,
)
from curation.records import ContentPart, Conversation, Message, ToolCall, canonical_json

DIALECTS = ("sharegpt", "openai", "alpaca")

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
}
OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


# ---------------------------------------------------------------- dialect detection


def detect_row(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    if "conversations" in value:
        return "sharegpt"
    msgs = value.get("messages")
    if isinstance(msgs, list):
        first = next((m for m in msgs if isinstance(m, dict)), None)
        if first is not None and "from" in first and "role" not in first:
            return "sharegpt"
        return "openai"
    if "instruction" in value and ("output" in value or "instances" in value):
        return "alpaca"
    return None


def detect_format(rows: list[Row], path: Path | str = "") -> str:
    """The dialect most of the first rows agree on; a file whose rows fit none is unreadable."""
    votes: dict[str, int] = {}
    for row in rows[:200]:
        d = detect_row(row.value)
        if d:
            votes[d] = votes.get(d, 0) + 1
    if not votes:
        bad = next((r for r in rows if r.error is not None), None)
        if bad is not None and all(r.error is not None for r in rows[:200]):
            raise FileReadError(f"{path}: no row could be read (line {bad.line}: {bad.error}); nothing imported")
        raise FileReadError(
            f"{path}: cannot tell the format: no row has 'conversations' (ShareGPT), "
            "'messages' (OpenAI) or 'instruction' + 'output' (Alpaca); pass --format"
        )
    return max(votes, key=lambda k: votes[k])


# ---------------------------------------------------------------- mapping helpers


def _want_str(v: Any, path: str, *, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise RowError(path, f"expected a string, got {_type_name(v)}")
    return v


def _json_text(v: Any, path: str) -> str:
    """Tool-call arguments as JSON text: objects are serialised canonically, strings kept."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict | list):
        return canonical_json(v)
    if v is None:
        return "{}"
    raise RowError(path, f"expected an object or a JSON string, got {_type_name(v)}")


def _tools(v: Any, path: str, notes: set[str]) -> tuple[dict[str, Any], ...]:
    if v is None or v == "":
        return ()
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError as e:
            raise RowError(path, f"tools is a string but not valid JSON ({e.msg})") from None
        notes.add("tools parsed from a JSON string")
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        raise RowError(path, f"expected a list of tools, got {_type_name(v)}")
    out = []
    for i, t in enumerate(v):
        if not isinstance(t, dict):
            raise RowError(f"{path}[{i}]", f"expected an object, got {_type_name(t)}")
        if "function" not in t and "name" in t:
            t = {"type": "function", "function": t}
            notes.add("tool schema wrapped as {type: function}")
        out.append(t)
    return tuple(out)


def _tool_call_from_json(value: Any, path: str) -> ToolCall:
    """A ShareGPT `function_call` turn or a content part holding {"name", "arguments"}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise RowError(path, f"tool call is not valid JSON ({e.msg})") from None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise RowError(path, "tool call needs a 'name'")
    return ToolCall(
        name=value["name"],
        arguments=_json_text(value.get("arguments", {}), f"{path}.arguments"),
        id=value.get("id") if isinstance(value.get("id"), str) else None,
    )


def _metadata(row: dict[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in used}


# ---------------------------------------------------------------- dialect mappers


def map_sharegpt(row: Any) -> tuple[Conversation, set[str]]:
    if not isinstance(row, dict):
        raise RowError("(row)", f"expected an object, got {_type_name(row)}")
    notes: set[str] = set()
    key = "conversations" if "conversations" in row else "messages"
    turns = row.get(key)
    if turns is None:
        raise RowError("conversations", "missing field")
    if not isinstance(turns, list):
        raise RowError(key, f"expected a list of turns, got {_type_name(turns)}")
    messages: list[Message] = []
    system = row.get("system")
    if system is not None and _want_str(system, "system"):
        messages.append(Message("system", system))
        notes.add("top-level system → system turn")
    for i, t in enumerate(turns):
        p = f"{key}[{i}]"
        if not isinstance(t, dict):
            raise RowError(p, f"expected an object, got {_type_name(t)}")
        rk, vk = ("from", "value") if "from" in t else ("role", "content")
        if rk not in t:
            raise RowError(f"{p}.from", "missing field")
        src = t[rk]
        if not isinstance(src, str):
            raise RowError(f"{p}.{rk}", f"expected a string, got {_type_name(src)}")
        role = SHAREGPT_ROLES.get(src.lower())
        if role is None:
            raise RowError(f"{p}.{rk}", f"unknown role {src!r}")
        if vk not in t:
            raise RowError(f"{p}.{vk}", "missing field")
        value = _want_str(t[vk], f"{p}.{vk}")
        if src != role:
            notes.add(f"role {src!r} → {role!r}")
        if src.lower() == "function_call":
            messages.append(Message("assistant", None, tool_calls=(_tool_call_from_json(value, f"{p}.{vk}"),)))
        else:
            messages.append(Message(role, value))
    tools = _tools(row.get("tools"), "tools", notes)
    meta = _metadata(row, {key, "system", "tools"})
    return Conversation(tuple(messages), tools, meta), notes


def _openai_content(
    v: Any, path: str, notes: set[str]
) -> tuple[str | tuple[ContentPart, ...] | None, str | None, list[ToolCall]]:
    """Content as text (or parts when not all text), reasoning text, tool calls from parts."""
    if v is None or isinstance(v, str):
        return v, None, []
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        raise RowError(path, f"expected a string, null or a list of parts, got {_type_name(v)}")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    others: list[ContentPart] = []
    for i, part in enumerate(v):
        pp = f"{path}[{i}]"
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise RowError(pp, f"expected an object, got {_type_name(part)}")
        ptype = part.get("type", "text")
        if not isinstance(ptype, str):
            raise RowError(f"{pp}.type", f"expected a string, got {_type_name(ptype)}")
        if ptype == "text":
            key = "text" if "text" in part else "value"
            texts.append(_want_str(part.get(key), f"{pp}.{key}") or "")
        elif ptype in ("reasoning", "thinking"):
            key = "text" if "text" in part else "value"
            reasoning.append(_want_str(part.get(key), f"{pp}.{key}") or "")
            notes.add("reasoning part → reasoning")
        elif ptype == "tool_call":
            calls.append(_tool_call_from_json(part.get("value", part.get("text")), f"{pp}.value"))
            notes.add("tool_call part → tool_calls")
        else:
            data = {k: val for k, val in part.items() if k not in ("type", "text")}
            text = part.get("text") if isinstance(part.get("text"), str) else None
            others.append(ContentPart(ptype, text, data or None))
    if others:
        parts = tuple(ContentPart("text", t) for t in texts) + tuple(others)
        return parts, "\n".join(reasoning) or None, calls
    if len(texts) > 1:
        notes.add("text parts joined")
    return "\n".join(texts), "\n".join(reasoning) or None, calls


def map_openai(row: Any) -> tuple[Conversation, set[str]]:
    if not isinstance(row, dict):
        raise RowError("(row)", f"expected an object, got {_type_name(row)}")
    notes: set[str] = set()
    if "messages" not in row:
        raise RowError("messages", "missing field")
    msgs = row["messages"]
    if not isinstance(msgs, list):
        raise RowError("messages", f"expected a list of messages, got {_type_name(msgs)}")
    messages: list[Message] = []
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RowError(p, f"expected an object, got {_type_name(m)}")
        if "role" not in m:
            raise RowError(f"{p}.role", "missing field")
        src = m["role"]
        if not isinstance(src, str):
            raise RowError(f"{p}.role", f"expected a string, got {_type_name(src)}")
        role = OPENAI_ROLES.get(src)
        if role is None:
            raise RowError(f"{p}.role", f"unknown role {src!r}")
        if src != role:
            notes.add(f"role {src!r} → {role!r}")
        content, reasoning, calls = _openai_content(m.get("content"), f"{p}.content", notes)
        if "reasoning_content" in m and reasoning is None:
            reasoning = _want_str(m["reasoning_content"], f"{p}.reasoning_content", optional=True)
        tc = m.get("tool_calls")
        if tc is not None:
            if not isinstance(tc, list):
                raise RowError(f"{p}.tool_calls", f"expected a list, got {_type_name(tc)}")
            for j, c in enumerate(tc):
                cp = f"{p}.tool_calls[{j}]"
                if not isinstance(c, dict):
                    raise RowError(cp, f"expected an object, got {_type_name(c)}")
                fn = c.get("function", c)
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise RowError(f"{cp}.function.name", "missing field")
                cid = c.get("id")
                calls.append(
                    ToolCall(
                        fn["name"],
                        _json_text(fn.get("arguments"), f"{cp}.function.arguments"),
                        cid if isinstance(cid, str) else None,
                    )
                )
        fc = m.get("function_call")
        if fc is not None:
            if not isinstance(fc, dict) or not isinstance(fc.get("name"), str):
                raise RowError(f"{p}.function_call.name", "missing field")
            calls.append(ToolCall(fc["name"], _json_text(fc.get("arguments"), f"{p}.function_call.arguments")))
            notes.add("legacy function_call → tool_calls")
        name = _want_str(m.get("name"), f"{p}.name", optional=True)
        call_id = _want_str(m.get("tool_call_id"), f"{p}.tool_call_id", optional=True)
        if content is None and not calls:
            content = ""
            notes.add("null content → empty text")
        messages.append(Message(role, content, name, tuple(calls), call_id, reasoning))
    tools = _tools(row.get("tools"), "tools", notes)
    if not tools and row.get("functions"):
        tools = _tools(row["functions"], "functions", notes)
        notes.add("legacy functions → tools")
    meta = _metadata(row, {"messages", "tools", "functions"})
    return Conversation(tuple(messages), tools, meta), notes


# How Alpaca's instruction and input become one user turn: a blank line between them (what
# Stanford Alpaca's prompt shows the two as separate paragraphs); LLaMA-Factory joins with "\n".
ALPACA_JOIN = "\n\n"


def map_alpaca(row: Any, join: str = ALPACA_JOIN) -> tuple[Conversation, set[str]]:
    if not isinstance(row, dict):
        raise RowError("(row)", f"expected an object, got {_type_name(row)}")
    notes: set[str] = set()
    used = {"instruction", "input", "output", "system", "history"}
    if "instruction" not in row:
        raise RowError("instruction", "missing field")
    instruction = _want_str(row["instruction"], "instruction") or ""
    inp = row.get("input")
    output = row.get("output")
    if output is None and isinstance(row.get("instances"), list):
        inst = row["instances"]
        if len(inst) != 1 or not isinstance(inst[0], dict):
            raise RowError("instances", f"expected exactly one instance object, got {len(inst)}")
        inp, output = inst[0].get("input"), inst[0].get("output")
        used.add("instances")
        notes.add("instances[0] → input/output")
        if output is None:
            raise RowError("instances[0].output", "missing field")
    if output is None:
        raise RowError("output", "missing field")
    output = _want_str(output, "output")
    inp = _want_str(inp, "input", optional=True)
    user = instruction
    if inp:
        user = f"{instruction}{join}{inp}"
        notes.add(
            "input joined to instruction with a blank line"
            if join == ALPACA_JOIN
            else f"input joined to instruction with {json.dumps(join)}"
        )
    messages: list[Message] = []
    system = _want_str(row.get("system"), "system", optional=True)
    if system:
        messages.append(Message("system", system))
    history = row.get("history")
    if history:
        if not isinstance(history, list):
            raise RowError("history", f"expected a list of [prompt, answer] pairs, got {_type_name(history)}")
        for i, pair in enumerate(history):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise RowError(f"history[{i}]", "expected a [prompt, answer] pair")
            messages.append(Message("user", _want_str(pair[0], f"history[{i}][0]")))
            messages.append(Message("assistant", _want_str(pair[1], f"history[{i}][1]")))
        notes.add("history → earlier turns")
    messages.append(Message("user", user))
    messages.append(Message("assistant", output))
    return Conversation(tuple(messages), (), _metadata(row, used)), notes


MAPPERS = {"sharegpt": map_sharegpt, "openai": map_openai, "alpaca": map_alpaca}


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The JSON path of the first string (or key) holding a lone UTF-16 surrogate, else None.

    `json` decodes an unpaired `\\ud800` escape into a code point that is not Unicode text: no
    UTF-8 writer (the store, an export, a tokenizer) can encode it.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(row)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and lone_surrogate(k) is not None:
                return (path + "." if path else "") + k.encode("utf-8", "backslashreplace").decode()
            found = lone_surrogate(v, sub)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = lone_surrogate(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _raw_of(row: Row) -> str:
    if row.raw is not None:
        return row.raw
    try:
        text = json.dumps(row.value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(row.value)
    # Stored text must be UTF-8: anything that is not stays visible as a \\u escape.
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _blank(m: Message) -> bool:
    if m.tool_calls:
        return False
    if isinstance(m.content, tuple):
        return not any(p.type != "text" or p.text for p in m.content)
    return not m.content and not m.reasoning


def make_mapper(
    fmt: str, column_map: Any = None, alpaca_join: str = ALPACA_JOIN
) -> Callable[[Any], tuple[Conversation, set[str]]]:
    """The dialect's mapper; `column_map` (a `curation.column_map.ColumnMap`) first renames a row's
    columns and roles to the dialect's own; `alpaca_join` goes between instruction and input."""
    mapper: Callable[[Any], tuple[Conversation, set[str]]] = MAPPERS[fmt]
    if fmt == "alpaca" and alpaca_join != ALPACA_JOIN:
        mapper = lambda value: map_alpaca(value, alpaca_join)  # noqa: E731
    if column_map is not None:
        base = mapper

        def mapped(value: Any) -> tuple[Conversation, set[str]]:
            conv, notes = base(column_map.apply(value))
            return conv, notes | {"columns mapped"}

        mapper = mapped
    return mapper


def map_row(
    row: Row, fmt: str, mapper: Callable[[Any], tuple[Conversation, set[str]]] | None = None
) -> Mapped | Quarantined:
    """One row mapped to a Conversation, or quarantined with its line, field and reason."""
    if row.error is not None:
        return Quarantined(row.index, row.line, "(line)", row.error, _raw_of(row))
    # Only text that carries a surrogate escape can decode into one (UTF-8 input never does).
    if row.raw is not None and _SURROGATE_ESCAPE.search(row.raw):
        where = lone_surrogate(row.value)
        if where is not None:
            msg = "lone UTF-16 surrogate escape (e.g. \\ud800 without its pair): not valid Unicode text"
            return Quarantined(row.index, row.line, where, msg, _raw_of(row))
    turns = "messages" if fmt == "openai" else "conversations"
    try:
        conv, notes = (mapper or MAPPERS[fmt])(row.value)
        if not conv.messages:
            raise RowError(turns, "no turns")
        if all(_blank(m) for m in conv.messages):
            raise RowError(turns, "every turn is empty (content null or '')")
    except RowError as e:
        return Quarantined(row.index, row.line, e.field, e.message, _raw_of(row))
    except RecursionError:
        return Quarantined(row.index, row.line, "(row)", "nested too deeply", _raw_of(row))
    return Mapped(row.index, row.line, conv, tuple(sorted(notes)))


def map_rows(
    rows: list[Row], fmt: str, path: Path | str = "", column_map: Any = None, *, alpaca_join: str = ALPACA_JOIN
) -> ParsedFile:
    """Map every row (see `make_mapper` for `column_map` and `alpaca_join`)."""
    mapper = make_mapper(fmt, column_map, alpaca_join)
    out = ParsedFile(Path(path), fmt, len(rows))
    for row in rows:
        r = map_row(row, fmt, mapper)
        if isinstance(r, Mapped):
            out.mapped.append(r)
        else:
            out.quarantined.append(r)
    return out


@dataclass(slots=True)
class Plain:
    """A row that needed no mapping: its canonical content JSON and search text, ready to store.

    Only rows that map to themselves take this path (OpenAI rows whose messages are exactly
    `{role, content}` with a standard role and text content, no tools): what `map_openai` would
    give, without building objects. Everything else goes through the mappers.
    """

    index: int
    line: int
    content_json: str
    search_text: str
    n_messages: int
    metadata: dict[str, Any]


_PLAIN_ROLES = frozenset(("system", "user", "assistant", "tool"))
_ROLE_CONTENT = frozenset(("role", "content"))


def plain_openai(row: Row) -> Plain | None:
    """`row` as a Plain record when it needs no mapping, else None (the mapper decides)."""
    v = row.value
    if type(v) is not dict:
        return None
    msgs = v.get("messages")
    if type(msgs) is not list or not msgs or "tools" in v or "functions" in v:
        return None
    texts = []
    for m in msgs:
        if type(m) is not dict or m.keys() != _ROLE_CONTENT:
            return None
        c = m["content"]
        if type(c) is not str or m["role"] not in _PLAIN_ROLES:
            return None
        texts.append(c)
    if not any(texts):  # every turn empty: the mapper quarantines it
        return None
    try:
        cj = orjson.dumps({"messages": msgs, "tools": []}, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except orjson.JSONEncodeError:  # a lone surrogate: the mapper's path decides
        return None
    meta = {k: x for k, x in v.items() if k != "messages"} if len(v) > 1 else {}
    return Plain(row.index, row.line, cj, "\n".join(texts), len(msgs), meta)
