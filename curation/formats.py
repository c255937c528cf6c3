"""Read ShareGPT, OpenAI `messages` and Alpaca files into `Conversation`s, and write them back.

A file is read into rows (JSON array elements, JSONL lines or Parquet rows), the dialect is
detected once per file, and each row is mapped on its own: a row that cannot be mapped becomes a
`Quarantined` record naming its line, the field and the reason; every other row still maps.
Each mapped row carries a short report of what the mapping renamed, merged or defaulted.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from curation.errors import SiftError
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


class FileReadError(SiftError):
    """The file as a whole cannot be read; nothing from it is imported."""


class RowError(Exception):
    """One row cannot be mapped. `field` is a JSON path into the row such as `messages[2].role`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Row:
    """One row of a file before mapping. `line` is 1-based (Parquet: row number)."""

    index: int
    line: int
    value: Any
    raw: str | None = None
    error: str | None = None


@dataclass(slots=True)
class Mapped:
    index: int
    line: int
    conversation: Conversation
    mapping: tuple[str, ...] = ()


@dataclass(slots=True)
class Quarantined:
    index: int
    line: int
    field: str
    message: str
    raw: str


@dataclass(slots=True)
class ParsedFile:
    path: Path
    format: str
    rows: int
    encoding: str = "utf-8"
    mapped: list[Mapped] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)


# ---------------------------------------------------------------- reading rows


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {
        str: "string",
        int: "number",
        float: "number",
        bool: "boolean",
        list: "array",
        dict: "object",
    }.get(type(v), type(v).__name__)


# JSON text starts with an ASCII character, so the zero bytes around the first one tell the
# encoding of a file without a byte-order mark (RFC 4627 section 3). BOMs are checked longest first:
# the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def sniff_encoding(data: bytes) -> tuple[str, int]:
    """The file's text encoding and the length of its byte-order mark (0 when it has none)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, len(bom)
    head = data[:4]
    if len(head) == 4:
        if head[:3] == b"\0\0\0" and head[3]:
            return "utf-32-be", 0
        if head[0] and head[1:] == b"\0\0\0":
            return "utf-32-le", 0
        if head[0] == 0 and head[1] and head[2] == 0 and head[3]:
            return "utf-16-be", 0
        if head[0] and head[1] == 0 and head[2] and head[3] == 0:
            return "utf-16-le", 0
    return "utf-8", 0


def _to_utf8(data: bytes, path: Path) -> tuple[bytes, str]:
    """UTF-16/UTF-32 bytes (with or without a BOM) re-encoded as UTF-8; UTF-8 bytes as they are."""
    encoding, skip = sniff_encoding(data)
    if encoding == "utf-8":
        return data[skip:], encoding
    try:
        # surrogatepass: an unpaired surrogate becomes a \\udxxx escape below, so only its row is
        # quarantined (as for a JSON escape) rather than the whole file refused.
        text = data[skip:].decode(encoding, errors="surrogatepass")
    except UnicodeDecodeError as e:
        raise FileReadError(
            f"{path}: looks like {encoding.upper()} text but is not valid {encoding.upper()} "
            f"(byte {e.start + skip}: {e.reason})"
        ) from None
    # A decoder lets lone surrogates of UTF-16 through as code points UTF-8 cannot hold.
    return text.encode("utf-8", errors="backslashreplace"), encoding


def _decode(data: bytes, path: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileReadError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}), nor UTF-16 or UTF-32") from None
    if "\r" in text:
        # Valid JSON has no raw CR inside a string, so old-Mac (CR-only) and Windows line ends can be
        # made LF without touching any value; line numbers then count every kind of line end.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _jsonl_row(index: int, lineno: int, chunk: bytes) -> Row:
    """One JSONL line as a Row: its value, or the reason it cannot be read."""
    try:
        # orjson first (several times faster); anything it refuses (bad UTF-8, a lone
        # surrogate escape, NaN, a huge int) takes the json module's path and its messages.
        return Row(index, lineno, orjson.loads(chunk), chunk.decode("utf-8").rstrip("\r\n"))
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        pass
    try:
        text = chunk.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raw = chunk.decode("utf-8", errors="replace").rstrip("\r\n")
        return Row(index, lineno, None, raw, f"invalid UTF-8 at byte {e.start}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return Row(index, lineno, None, text, f"invalid JSON: {e.msg} at column {e.colno}")
    except RecursionError:
        return Row(index, lineno, None, text, "invalid JSON: nested too deeply")
    return Row(index, lineno, value, text)


def _read_jsonl(data: bytes) -> Iterator[Row]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    index = 0
    # CR-only (old Mac) files are split on CR as well; a JSON line never holds a raw CR or LF.
    lines = data.splitlines() if b"\r" in data else data.split(b"\n")
    for lineno, chunk in enumerate(lines, start=1):
        if not chunk.strip():
            continue
        yield _jsonl_row(index, lineno, chunk)
        index += 1


def _stream_jsonl(path: Path) -> Iterator[Row]:
    """UTF-8 JSON Lines read line by line: memory stays bounded whatever the file's size. Line
    numbers count every kind of line end, as `_read_jsonl` does (a CR inside an LF line ends a line)."""
    index = 0
    lineno = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f):
            if n == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            body = raw[:-1] if raw.endswith(b"\n") else raw
            parts = body.splitlines() if b"\r" in body else [body]
            if not parts:  # a line holding only CR/LF
                parts = [b""]
            for chunk in parts:
                lineno += 1
                if not chunk.strip():
                    continue
                yield _jsonl_row(index, lineno, chunk)
                index += 1


def _read_json(text: str, path: Path) -> list[Row]:
    """A JSON array (rows with their line numbers), a single object, or JSONL misnamed .json."""
    decoder = json.JSONDecoder()
    n = len(text)
    pos = 0
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    if pos == n:
        raise FileReadError(f"{path}: the file is empty")

    def where(p: int) -> str:
        line = text.count("\n", 0, p) + 1
        col = p - (text.rfind("\n", 0, p) + 1) + 1
        return f"line {line} column {col}"

    if text[pos] != "[":
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise FileReadError(f"{path}: invalid JSON: {e.msg} at {where(e.pos)}") from None
        except RecursionError:
            raise FileReadError(f"{path}: invalid JSON: nested too deeply") from None
        if text[end:].strip():
            # Several top-level values: the file is JSON Lines under a .json name.
            return list(_read_jsonl(text.encode("utf-8")))
        return [Row(0, text.count("\n", 0, pos) + 1, value, text[pos:end])]

    rows: list[Row] = []
    pos += 1
    line = text.count("\n", 0, pos) + 1
    last = pos
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos < n and text[pos] == "]" and not rows:
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise FileReadError(f"{path}: invalid JSON: {e.msg} at {where(e.pos)}") from None
        except RecursionError:
            raise FileReadError(f"{path}: invalid JSON: nested too deeply at {where(pos)}") from None
        line += text.count("\n", last, pos)
        last = pos
        rows.append(Row(len(rows), line, value, None))
        # An object's raw text is only kept when it may hold a lone surrogate (map_row checks it).
        if not isinstance(value, dict) or _SURROGATE_ESCAPE.search(text, pos, end):
            rows[-1].raw = text[pos:end]
        pos = end
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos < n and text[pos] == ",":
            pos += 1
            continue
        if pos < n and text[pos] == "]":
            break
        raise FileReadError(f"{path}: invalid JSON: expected ',' or ']' at {where(pos)}")
    if text[pos + 1 :].strip():
        raise FileReadError(f"{path}: invalid JSON: extra data after the array at {where(pos + 1)}")
    return rows


def _stream_parquet(path: Path) -> Iterator[Row]:
    """Parquet rows batch by batch (memory bounded by one batch)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover - pyarrow is a core dependency
        raise FileReadError("reading Parquet needs pyarrow: pip install pyarrow") from e
    try:
        pf = pq.ParquetFile(path)
        batches = pf.iter_batches(batch_size=8192)
        i = 0
        for batch in batches:
            for v in batch.to_pylist():
                yield Row(i, i + 1, v)
                i += 1
    except FileReadError:
        raise
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise FileReadError(f"{path}: not a readable Parquet file ({e})") from None


def _read_parquet(path: Path) -> list[Row]:
    return list(_stream_parquet(path))


def _check_path(path: Path) -> None:
    try:
        if path.is_dir():
            raise FileReadError(f"{path}: is a directory, not a file")
        if not path.exists():
            raise FileReadError(f"{path}: no such file")
    except OSError as e:
        raise FileReadError(f"{path}: cannot read ({e.strerror})") from None
    if path.suffix.lower() not in (".json", ".jsonl", ".ndjson", ".parquet"):
        raise FileReadError(f"{path}: unsupported file type {path.suffix!r} (use .json, .jsonl or .parquet)")


def open_rows(path: Path | str) -> tuple[Iterator[Row], str]:
    """The rows of a file as a stream, and the encoding it is read in (`utf-8`, `utf-16-le`, ...,
    `parquet`).

    UTF-8 JSON Lines and Parquet are read incrementally (memory independent of the file's size);
    a JSON array, and a UTF-16/UTF-32 file, are read whole.
    """
    path = Path(path)
    _check_path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _stream_parquet(path), "parquet"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        encoding, _ = sniff_encoding(head)
        if suffix in (".jsonl", ".ndjson") and encoding == "utf-8":
            return _guard_os(_stream_jsonl(path), path), encoding
        data = path.read_bytes()
    except OSError as e:
        raise FileReadError(f"{path}: cannot read ({e.strerror})") from None
    data, encoding = _to_utf8(data, path)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(data), encoding
    return iter(_read_json(_decode(data, path), path)), encoding


def _guard_os(rows: Iterator[Row], path: Path) -> Iterator[Row]:
    try:
        yield from rows
    except OSError as e:
        raise FileReadError(f"{path}: cannot read ({e.strerror})") from None


def iter_rows(path: Path | str) -> Iterator[Row]:
    """The rows of a file, each with its line, as a stream (see `open_rows`)."""
    return open_rows(path)[0]


def read_rows(path: Path | str) -> list[Row]:
    """All rows of a file, each with its line; an unreadable file raises FileReadError."""
    return list(iter_rows(path))


def read_rows_encoding(path: Path | str) -> tuple[list[Row], str]:
    """All rows of a file and the text encoding it was read in (`utf-8`, `utf-16-le`, ...)."""
    rows, encoding = open_rows(path)
    return list(rows), encoding


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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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


@dataclass(slots=True)
class FileStream:
    """A file opened for a streamed import: its dialect is known, its rows not yet read.

    `rows` counts the rows handed out so far (all of them once `items()` is exhausted).
    `mapper`: a column map / Alpaca join applied to every row (None: the dialect's own mapper).
    """

    path: Path
    format: str
    _head: list[Row]
    _rest: Iterator[Row]
    rows: int = 0
    encoding: str = "utf-8"
    size: int = 0  # bytes
    mapper: Callable[[Any], tuple[Conversation, set[str]]] | None = None

    def items(self, *, plain: bool = False) -> Iterator[Mapped | Quarantined | Plain]:
        """Each row mapped (or quarantined). `plain`: rows that need no mapping come as `Plain`."""
        fast = plain and self.format == "openai" and self.mapper is None
        for part in (self._head, self._rest):
            for row in part:
                self.rows += 1
                if fast and row.error is None:
                    p = plain_openai(row)
                    if p is not None:
                        yield p
                        continue
                yield map_row(row, self.format, self.mapper)
        self._head = []


def open_file(
    path: Path | str, fmt: str = "auto", *, column_map: Any = None, alpaca_join: str = ALPACA_JOIN
) -> FileStream:
    """Open a file for a streamed import. Raises FileReadError when it cannot be read at all.

    Only the first 200 rows are read here (to detect the dialect); a JSON array is parsed
    whole, so a broken array is refused before anything is written. With a `column_map` the
    dialect is the map's.
    """
    path = Path(path)
    if fmt not in ("auto", *DIALECTS):
        raise FileReadError(f"unknown format {fmt!r} (use auto, {', '.join(DIALECTS)})")
    rows, encoding = open_rows(path)
    head = list(islice(rows, 200))
    if column_map is not None:
        fmt = column_map.dialect
    elif fmt == "auto":
        fmt = detect_format(head, path) if head else "openai"
    elif head and not any(detect_row(r.value) for r in head):
        # A forced dialect over a file that is none of them would put every line's raw text in
        # the quarantine: whatever the file is, it is not chat data, and none of it is stored.
        raise FileReadError(
            f"{path}: no row looks like ShareGPT, OpenAI or Alpaca data (of the first {len(head)}); nothing imported"
        )
    mapper = make_mapper(fmt, column_map, alpaca_join) if column_map is not None or alpaca_join != ALPACA_JOIN else None
    return FileStream(path, fmt, head, rows, encoding=encoding, size=path.stat().st_size, mapper=mapper)


def parse_file(
    path: Path | str,
    fmt: str = "auto",
    *,
    column_map: Any = None,
    limit: int | None = None,
    alpaca_join: str = ALPACA_JOIN,
) -> ParsedFile:
    """Read and map a whole file (or its first `limit` rows: a preview). Raises FileReadError when
    the file itself is unreadable."""
    stream = open_file(path, fmt, column_map=column_map, alpaca_join=alpaca_join)
    out = ParsedFile(stream.path, stream.format, 0, encoding=stream.encoding)
    items: Iterator[Mapped | Quarantined | Plain] = stream.items()
    if limit is not None:
        items = islice(items, limit)
    for r in items:
        if isinstance(r, Mapped):
            out.mapped.append(r)
        elif isinstance(r, Quarantined):
            out.quarantined.append(r)
    out.rows = stream.rows
    return out


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
