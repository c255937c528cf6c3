"""The import pipeline: a parsed or streamed file lands in one transaction, chunk by chunk
(new conversations as revision 1, provenance per source row, quarantine, the source record)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from curation.formats import FileStream, Mapped, ParsedFile, Plain, Quarantined
from curation.records import Conversation, sha256_hex
from workbench.store._db import Database, dumps, now
from workbench.store.search import index_revisions, postings_table, store_postings


def search_text(conv: Conversation) -> str:
    return "\n".join(m.text for m in conv.messages)


# ------------------------------------------------------------ streamed import helpers

IMPORT_CHUNK_ROWS = 5_000
# New revisions go into the text index this many rows at a time (fewer, larger SQL statements).
INDEX_BATCH_ROWS = 20_000
# A file up to this size is read and mapped before the store is locked (another process waits
# only for the writes); a larger one streams inside its transaction, in bounded memory.
IMPORT_PREREAD_BYTES = 32 << 20
# DuckDB's buffer memory while a file lands (it spills to its temp folder past this), so an
# import's memory does not grow with the file. Restored afterwards.
IMPORT_MEMORY_LIMIT = "512MB"


class _Chunk:
    """One bounded slice of a file, ready to land: mapped rows and quarantined rows as Arrow."""

    __slots__ = ("mapped", "quarantined")

    def __init__(self, mapped: pa.Table | None, quarantined: pa.Table | None) -> None:
        self.mapped = mapped
        self.quarantined = quarantined


def _metadata_json(meta: dict[str, Any]) -> str:
    if not meta:
        return "{}"
    try:
        return orjson.dumps(meta, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return dumps(meta)


def _build_chunk(items: list[Mapped | Quarantined | Plain]) -> _Chunk:
    ids: list[str] = []
    hashes: list[str | None] = []
    lines: list[int] = []
    mappings: list[list[str]] = []
    first: list[bool] = []
    contents: list[str | None] = []
    texts: list[str | None] = []
    n_msgs: list[int | None] = []
    metas: list[str | None] = []
    seen: set[str] = set()
    q: list[Quarantined] = []
    for it in items:
        if isinstance(it, Quarantined):
            q.append(it)
            continue
        if isinstance(it, Plain):
            cj, mapping = it.content_json, []
        else:
            cj, mapping = it.conversation.content_json(), list(it.mapping)
        h = sha256_hex(cj)
        cid = h[:16]  # content_id(cj)
        ids.append(cid)
        lines.append(it.line)
        mappings.append(mapping)
        if cid in seen:
            # A repeat inside the chunk: only its provenance is kept.
            first.append(False)
            hashes.append(None)
            contents.append(None)
            texts.append(None)
            n_msgs.append(None)
            metas.append(None)
            continue
        seen.add(cid)
        first.append(True)
        hashes.append(h)
        contents.append(cj)
        if isinstance(it, Plain):
            texts.append(it.search_text)
            n_msgs.append(it.n_messages)
            metas.append(_metadata_json(it.metadata))
        else:
            conv = it.conversation
            texts.append(search_text(conv))
            n_msgs.append(len(conv.messages))
            metas.append(_metadata_json(conv.metadata))
    mapped = None
    if ids:
        mapped = pa.table(
            {
                "id": ids,
                "line": pa.array(lines, pa.int32()),
                "mapping": pa.array(mappings, pa.list_(pa.string())),
                "first": first,
                "sha256": hashes,
                "content": contents,
                "search_text": texts,
                "n_messages": pa.array(n_msgs, pa.int32()),
                "metadata": metas,
            }
        )
    quarantined = None
    if q:
        quarantined = pa.table(
            {
                "line": pa.array([x.line for x in q], pa.int32()),
                "row_index": pa.array([x.index for x in q], pa.int32()),
                "field": [x.field for x in q],
                "message": [x.message for x in q],
                "raw": [x.raw for x in q],
            }
        )
    return _Chunk(mapped, quarantined)


def _chunks(items: Iterator[Mapped | Quarantined | Plain], size: int) -> Iterator[_Chunk]:
    while True:
        part = list(islice(items, size))
        if not part:
            return
        yield _build_chunk(part)


def _prefetch(gen: Iterator[_Chunk], depth: int = 2) -> Iterator[_Chunk]:
    """Run `gen` in a thread, `depth` chunks ahead: reading and mapping the next chunk overlaps
    DuckDB writing this one (DuckDB releases the GIL). Memory stays bounded by `depth` chunks."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for c in gen:
                while not stop.is_set():
                    try:
                        q.put(("chunk", c), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # handed to the consumer, which raises it in its own thread
            while not stop.is_set():
                try:
                    q.put(("error", e), timeout=0.1)
                    return
                except queue.Full:
                    continue

    t = threading.Thread(target=work, name="sift-import-read", daemon=True)
    t.start()
    try:
        while True:
            kind, val = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise val
            yield val
    finally:
        stop.set()
        t.join()


class ImportStore:
    db: Database

    def import_parsed(
        self,
        parsed: ParsedFile,
        *,
        sha256: str,
        actor: str,
        licence: str | None = None,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        """Land one already parsed file in one transaction. Returns the file's counts.
        `display_name`: the name the user knows the file by (an upload's own name), recorded
        instead of its path."""
        items: list[Mapped | Quarantined | Plain] = [*parsed.mapped, *parsed.quarantined]
        items.sort(key=lambda x: x.index)
        return self._import_items(
            parsed.path,
            parsed.format,
            iter(items),
            lambda: parsed.rows,
            sha256=sha256,
            actor=actor,
            licence=licence,
            display_name=display_name,
        )

    def import_stream(
        self,
        stream: FileStream,
        *,
        sha256: str,
        actor: str,
        licence: str | None = None,
        chunk_rows: int | None = None,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        """Land one file in one transaction, read and written in chunks of `chunk_rows` rows:
        memory is bounded by a few chunks whatever the file's size. Returns the file's counts."""
        items: Iterator[Mapped | Quarantined | Plain] = stream.items(plain=True)
        preread = stream.size <= IMPORT_PREREAD_BYTES
        return self._import_items(
            stream.path,
            stream.format,
            items,
            lambda: stream.rows,
            sha256=sha256,
            actor=actor,
            licence=licence,
            chunk_rows=chunk_rows or IMPORT_CHUNK_ROWS,
            preread=preread,
            display_name=display_name,
        )

    def _import_items(
        self,
        path: Path,
        fmt: str,
        items: Iterator[Mapped | Quarantined | Plain],
        rows: Callable[[], int],
        *,
        sha256: str,
        actor: str,
        licence: str | None,
        chunk_rows: int | None = None,
        preread: bool = True,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        """`preread`: read, map and build every chunk before the store is locked (a small file:
        another process waits only for the writes); else stream them inside the transaction."""
        chunk_rows = chunk_rows or IMPORT_CHUNK_ROWS
        chunks: Iterator[_Chunk] = _chunks(items, chunk_rows)
        if preread:
            chunks = iter(list(chunks))
        with self.db.transaction(settings={"memory_limit": IMPORT_MEMORY_LIMIT}) as con:
            return self._land(con, path, fmt, chunks, rows, sha256, actor, licence, now(), display_name)

    def _land(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        fmt: str,
        chunks: Iterator[_Chunk],
        rows: Callable[[], int],
        sha256: str,
        actor: str,
        licence: str | None,
        at: datetime,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        # An upload is recorded under the name the user knows it by, not its temporary path.
        name = display_name if display_name is not None else path.name
        shown = display_name if display_name is not None else str(path)
        full = display_name if display_name is not None else str(path.resolve())
        imported = mapped = quarantined = 0
        source_id = con.execute("SELECT nextval('source_ids')").fetchall()[0][0]
        con.execute(postings_table())
        to_index: list[pa.Table] = []  # new revisions' search text, indexed a few chunks at a time
        # Chunks are read by DuckDB's replacement scan of the local Arrow tables below (named
        # in the SQL): a registered table would stay referenced until COMMIT, keeping every
        # chunk in memory.
        for chunk in _prefetch(chunks):
            if chunk.mapped is not None:
                chunk_ids = chunk.mapped.select(["id"])
                mapped += chunk_ids.num_rows
                present = [
                    r[0] for r in con.execute("SELECT id FROM chunk_ids SEMI JOIN conversations USING (id)").fetchall()
                ]
                chunk_new = chunk.mapped
                keep = chunk.mapped.column("first")
                if present:
                    keep = pc.and_(keep, pc.invert(pc.is_in(chunk_ids.column(0), value_set=pa.array(present))))
                if present or not pc.all(keep).as_py():
                    chunk_new = chunk_new.filter(keep)
                if chunk_new.num_rows:
                    imported += chunk_new.num_rows
                    con.execute(
                        "INSERT INTO conversations SELECT id, 'pending', 1, id, metadata, [], ?, ? FROM chunk_new",
                        [at, at],
                    )
                    con.execute(
                        "INSERT INTO revisions SELECT id, 1, content, sha256, search_text, n_messages, "
                        "'import', ?, NULL, NULL, ? FROM chunk_new",
                        [actor, at],
                    )
                    to_index.append(
                        pa.table(
                            {
                                "conversation_id": chunk_new.column("id"),
                                "revision": pa.array([1] * chunk_new.num_rows, pa.int32()),
                                "created_at": pa.array([at] * chunk_new.num_rows, pa.timestamp("us")),
                                "search_text": chunk_new.column("search_text"),
                            }
                        )
                    )
                    if sum(t.num_rows for t in to_index) >= INDEX_BATCH_ROWS:
                        index_revisions(con, pa.concat_tables(to_index), into="_search_new")
                        to_index.clear()
                # Provenance (one per source row) is built here, in SQL, from typed columns.
                chunk_prov = chunk.mapped.select(["id", "line", "mapping"])
                con.execute(
                    "INSERT INTO provenance SELECT id, ?, CASE WHEN len(mapping) = 0 "
                    "THEN json_object('format', ?, 'kind', 'import', 'line', line, 'source', ?) "
                    "ELSE json_object('format', ?, 'kind', 'import', 'line', line, 'mapping', mapping, "
                    "'source', ?) END, ? FROM chunk_prov",
                    [source_id, fmt, name, fmt, name, at],
                )
                del chunk_prov  # read by name in the SQL above
            if chunk.quarantined is not None:
                chunk_q = chunk.quarantined
                quarantined += chunk_q.num_rows
                con.execute(
                    "INSERT INTO quarantine SELECT ?, ?, line, row_index, field, message, raw, ? FROM chunk_q",
                    [source_id, shown, at],
                )
        if to_index:
            index_revisions(con, pa.concat_tables(to_index), into="_search_new")
        for stmt in store_postings():  # the file's postings, sorted by token
            con.execute(stmt)
        already = mapped - imported
        con.execute(
            "INSERT INTO sources VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                source_id,
                full,
                name,
                sha256,
                fmt,
                rows(),
                imported,
                already,
                quarantined,
                licence,
                actor,
                at,
            ],
        )
        con.execute(
            "INSERT INTO events VALUES (nextval('event_ids'), NULL, 'import', ?, ?, ?)",
            [dumps({"source_id": source_id, "file": name}), actor, at],
        )
        return {
            "path": shown,
            "format": fmt,
            "rows": rows(),
            "imported": imported,
            "already_present": already,
            "quarantined": quarantined,
        }
