"""Files into rows (JSON arrays, JSONL lines, Parquet rows), whatever their encoding and line ends;
the record types an import deals in."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from curation.errors import SiftError
from curation.records import Conversation

# A JSON escape of a UTF-16 surrogate: only rows whose raw text has one are walked for lone ones.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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
