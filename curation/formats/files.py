"""A file opened for import: `open_file` (a `FileStream`, read row by row) and `parse_file` (all at once)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from curation.formats.mapping import (
    ALPACA_JOIN,
    DIALECTS,
    Plain,
    detect_format,
    detect_row,
    make_mapper,
    map_row,
    plain_openai,
)
from curation.formats.rows import FileReadError, Mapped, ParsedFile, Quarantined, Row, open_rows
from curation.records import Conversation


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
