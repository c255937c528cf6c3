"""Read ShareGPT, OpenAI `messages` and Alpaca files into `Conversation`s, and write them back.

A file is read into rows (JSON array elements, JSONL lines or Parquet rows), the dialect is
detected once per file, and each row is mapped on its own: a row that cannot be mapped becomes a
`Quarantined` record naming its line, the field and the reason; every other row still maps.
Each mapped row carries a short report of what the mapping renamed, merged or defaulted.

Modules: `rows` (files into rows: JSON, JSONL, Parquet; encodings; the record types), `mapping`
(dialect detection and the mappers, `map_row`, the `Plain` fast path), `files` (`open_file` /
`FileStream` for a streamed import, `parse_file`) and `writers` (`to_openai`, `to_sharegpt`,
`to_alpaca`). Import every name from `curation.formats`.
"""

from curation.formats.files import FileStream, open_file, parse_file
from curation.formats.mapping import (
    ALPACA_JOIN,
    DIALECTS,
    MAPPERS,
    OPENAI_ROLES,
    SHAREGPT_ROLES,
    Plain,
    detect_format,
    detect_row,
    lone_surrogate,
    make_mapper,
    map_alpaca,
    map_openai,
    map_row,
    map_rows,
    map_sharegpt,
    plain_openai,
)
from curation.formats.rows import (
    FileReadError,
    Mapped,
    ParsedFile,
    Quarantined,
    Row,
    RowError,
    iter_rows,
    open_rows,
    read_rows,
    read_rows_encoding,
    sniff_encoding,
)
from curation.formats.writers import WRITERS, WriteError, to_alpaca, to_dialect, to_openai, to_sharegpt

__all__ = [
    "ALPACA_JOIN",
    "DIALECTS",
    "MAPPERS",
    "OPENAI_ROLES",
    "SHAREGPT_ROLES",
    "WRITERS",
    "FileReadError",
    "FileStream",
    "Mapped",
    "ParsedFile",
    "Plain",
    "Quarantined",
    "Row",
    "RowError",
    "WriteError",
    "detect_format",
    "detect_row",
    "iter_rows",
    "lone_surrogate",
    "make_mapper",
    "map_alpaca",
    "map_openai",
    "map_row",
    "map_rows",
    "map_sharegpt",
    "open_file",
    "open_rows",
    "parse_file",
    "plain_openai",
    "read_rows",
    "read_rows_encoding",
    "sniff_encoding",
    "to_alpaca",
    "to_dialect",
    "to_openai",
    "to_sharegpt",
]
