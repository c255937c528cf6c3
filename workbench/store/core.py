"""Conversations, revisions, provenance, events, sources, quarantine and stage flags."""

from __future__ import annotations

import json
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
from curation.records import Conversation, Provenance, content_id, sha256_hex
from workbench.store._db import ConflictError, Database, Migration, NotFound, StoreError, dumps, first, now

STATUSES = ("pending", "accepted", "rejected")

MIGRATIONS = [
    Migration(
        "core",
        1,
        """
        CREATE SEQUENCE source_ids START 1;
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY, path TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL,
            format TEXT NOT NULL, rows INTEGER NOT NULL, imported INTEGER NOT NULL,
            already_present INTEGER NOT NULL, quarantined INTEGER NOT NULL, licence TEXT,
            actor TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE TABLE conversations (
            id TEXT PRIMARY KEY, status TEXT NOT NULL, revision INTEGER NOT NULL,
            family_id TEXT NOT NULL, metadata TEXT NOT NULL, tags TEXT[] NOT NULL,
            created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
        CREATE TABLE revisions (
            conversation_id TEXT NOT NULL, revision INTEGER NOT NULL, content TEXT NOT NULL,
            content_sha256 TEXT NOT NULL, search_text TEXT NOT NULL, n_messages INTEGER NOT NULL,
            kind TEXT NOT NULL, actor TEXT NOT NULL, note TEXT, provenance TEXT,
            ts TIMESTAMP NOT NULL, PRIMARY KEY (conversation_id, revision));
        CREATE TABLE provenance (
            conversation_id TEXT NOT NULL, source_id INTEGER, data TEXT NOT NULL,
            ts TIMESTAMP NOT NULL);
        CREATE SEQUENCE event_ids START 1;
        CREATE TABLE events (
            id BIGINT PRIMARY KEY, conversation_id TEXT, kind TEXT NOT NULL, data TEXT NOT NULL,
            actor TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE TABLE quarantine (
            source_id INTEGER NOT NULL, file TEXT NOT NULL, line INTEGER NOT NULL,
            row_index INTEGER NOT NULL, field TEXT NOT NULL, message TEXT NOT NULL,
            raw TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE TABLE stage_runs (
            id TEXT PRIMARY KEY, stage TEXT NOT NULL, config TEXT NOT NULL, stats TEXT,
            actor TEXT NOT NULL, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP);
        CREATE TABLE flags (
            conversation_id TEXT NOT NULL, revision INTEGER NOT NULL, stage TEXT NOT NULL,
            reason TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL, details TEXT,
            run_id TEXT, ts TIMESTAMP NOT NULL);
        CREATE INDEX flags_conv ON flags (conversation_id);
        CREATE INDEX prov_conv ON provenance (conversation_id);
        CREATE INDEX events_conv ON events (conversation_id);
        """,
    ),
]


def search_text(conv: Conversation) -> str:
    return "\n".join(m.text for m in conv.messages)


def filtered_from(
    *,
    status: str | None = None,
    source: str | None = None,
    flag: str | None = None,
    text: str | None = None,
    tag: str | None = None,
    reviewer: str | None = None,
) -> tuple[str, list[Any]]:
    """`FROM conversations c ... WHERE ...` for the list filters, and its arguments.

    Revisions are joined (as `r`, the current revision) only for a text search, so counting and
    paging a million rows reads the narrow conversations table alone.
    """
    where = ["TRUE"]
    args: list[Any] = []
    if status:
        if status not in STATUSES:
            raise StoreError(f"unknown status {status!r} (use {', '.join(STATUSES)})")
        where.append("c.status = ?")
        args.append(status)
    if source:
        where.append(
            "EXISTS (SELECT 1 FROM provenance p JOIN sources s ON s.id = p.source_id "
            "WHERE p.conversation_id = c.id AND (s.name = ? OR s.path = ?))"
        )
        args += [source, source]
    if flag:
        where.append(
            "EXISTS (SELECT 1 FROM flags f WHERE f.conversation_id = c.id AND f.revision = c.revision AND f.reason = ?)"
        )
        args.append(flag)
    if text:
        where.append("r.search_text ILIKE ?")
        args.append("%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    if tag:
        where.append("list_contains(c.tags, ?)")
        args.append(tag)
    if reviewer:
        where.append("EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = c.id AND e.actor = ?)")
        args.append(reviewer)
    join = " JOIN revisions r ON r.conversation_id = c.id AND r.revision = c.revision" if text else ""
    return f"FROM conversations c{join} WHERE {' AND '.join(where)}", args


# ------------------------------------------------------------ streamed import helpers

IMPORT_CHUNK_ROWS = 5_000
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


class CoreStore:
    db: Database

    # ------------------------------------------------------------ import

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
        source_id = con.execute("SELECT nextval('source_ids')").fetchall()[0][0]  # type: ignore[index]
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

    # ------------------------------------------------------------ reads

    def stats(self) -> dict[str, Any]:
        with self.db.connect() as con:
            one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
            by_status = dict.fromkeys(STATUSES, 0)
            for s, n in con.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall():
                by_status[s] = n
            return {
                "conversations": one("SELECT count(*) FROM conversations"),
                "revisions": one("SELECT count(*) FROM revisions"),
                "quarantined": one("SELECT count(*) FROM quarantine"),
                "sources": one("SELECT count(*) FROM sources"),
                "by_status": by_status,
            }

    def _conv_row(self, con: duckdb.DuckDBPyConnection, cid: str) -> tuple[Any, ...]:
        row = first(
            con.execute(
                "SELECT id, status, revision, family_id, metadata, tags, created_at, updated_at "
                "FROM conversations WHERE id = ?",
                [cid],
            )
        )
        if row is None:
            matches = con.execute("SELECT id FROM conversations WHERE starts_with(id, ?) LIMIT 2", [cid]).fetchall()
            if len(matches) == 1 and len(cid) >= 4:
                return self._conv_row(con, matches[0][0])
            raise NotFound(f"no conversation {cid!r}")
        return row

    def get_conversation(self, cid: str, revision: int | None = None) -> dict[str, Any]:
        """One conversation with its current (or a given) revision, provenance and history."""
        with self.db.connect() as con:
            cid, status, rev, family, meta, tags, created, updated = self._conv_row(con, cid)
            want = revision or rev
            r = first(
                con.execute(
                    "SELECT content, kind, actor, ts, provenance FROM revisions "
                    "WHERE conversation_id = ? AND revision = ?",
                    [cid, want],
                )
            )
            if r is None:
                raise NotFound(f"conversation {cid} has no revision {want}")
            content = json.loads(r[0])
            prov = [
                {**json.loads(d), "source_id": s, "at": at.isoformat()}
                for s, d, at in con.execute(
                    "SELECT source_id, data, ts FROM provenance WHERE conversation_id = ? ORDER BY ts, source_id",
                    [cid],
                ).fetchall()
            ]
            history: list[dict[str, Any]] = []
            for n, kind, actor, at, note, p in con.execute(
                "SELECT revision, kind, actor, ts, note, provenance FROM revisions "
                "WHERE conversation_id = ? ORDER BY revision",
                [cid],
            ).fetchall():
                h = {"kind": "revision", "revision": n, "by": kind, "actor": actor, "at": at.isoformat()}
                if note:
                    h["note"] = note
                if p:
                    h["provenance"] = json.loads(p)
                history.append(h)
            for kind, data, actor, at in con.execute(
                "SELECT kind, data, actor, ts FROM events WHERE conversation_id = ? ORDER BY id", [cid]
            ).fetchall():
                history.append({"kind": kind, **json.loads(data), "actor": actor, "at": at.isoformat()})
            history.sort(key=lambda h: h["at"])
            flags = [
                {"stage": s, "reason": rc, "severity": sev, "message": msg, "details": json.loads(d) if d else None}
                for s, rc, sev, msg, d in con.execute(
                    "SELECT stage, reason, severity, message, details FROM flags "
                    "WHERE conversation_id = ? AND revision = ? ORDER BY stage, reason",
                    [cid, want],
                ).fetchall()
            ]
        return {
            "id": cid,
            "status": status,
            "revision": want,
            "current_revision": rev,
            "family_id": family,
            "messages": content["messages"],
            "tools": content["tools"],
            "metadata": json.loads(meta),
            "tags": list(tags),
            "flags": flags,
            "provenance": prov,
            "history": history,
            "created_at": created.isoformat(),
            "updated_at": updated.isoformat(),
        }

    def list_conversations(
        self,
        *,
        status: str | None = None,
        source: str | None = None,
        flag: str | None = None,
        text: str | None = None,
        tag: str | None = None,
        reviewer: str | None = None,
        limit: int = 50,
        offset: int = 0,
        after: tuple[Any, str] | list[Any] | None = None,
        count_limit: int | None = None,
    ) -> dict[str, Any]:
        """A page of conversations in (created_at, id) order.

        `after`: the `next_after` of the previous page (keyset paging: page 5000 costs what page 1
        does; `offset` is kept for scripts). `count_limit`: stop counting past it (`total` is then
        `count_limit` and `total_capped` true) instead of an exact count over every match.
        """
        base, args = filtered_from(status=status, source=source, flag=flag, text=text, tag=tag, reviewer=reviewer)
        cond, cargs = "", []
        if after is not None:
            at = datetime.fromisoformat(after[0]) if isinstance(after[0], str) else after[0]
            cond, cargs = " AND (c.created_at > ? OR (c.created_at = ? AND c.id > ?))", [at, at, after[1]]
            offset = 0
        with self.db.connect() as con:
            if count_limit is None:
                total = con.execute(f"SELECT count(*) {base}", args).fetchall()[0][0]  # type: ignore[index]
            else:
                total = con.execute(
                    f"SELECT count(*) FROM (SELECT 1 {base} LIMIT {int(count_limit) + 1})", args
                ).fetchall()[0][0]  # type: ignore[index]
            # Page the narrow conversations table first, then read only the page's revisions
            # (point reads: a join would scan every revision's text).
            page = con.execute(
                f"SELECT c.id, c.status, c.revision, c.tags, c.updated_at, c.created_at {base}{cond} "
                "ORDER BY c.created_at, c.id LIMIT ? OFFSET ?",
                [*args, *cargs, limit, offset],
            ).fetchall()
            revs = {}
            if page:
                revs = {
                    (r[0], r[1]): (r[2], r[3])
                    for r in con.execute(
                        "SELECT conversation_id, revision, n_messages, left(search_text, 160) FROM revisions "
                        "WHERE conversation_id IN (SELECT unnest(?))",
                        [[p[0] for p in page]],
                    ).fetchall()
                }
        capped = count_limit is not None and total > count_limit
        return {
            "total": min(total, count_limit) if count_limit is not None else total,
            "total_capped": capped,
            "next_after": [page[-1][5].isoformat(), page[-1][0]] if len(page) == limit else None,
            "conversations": [
                {
                    "id": p[0],
                    "status": p[1],
                    "revision": p[2],
                    "messages": revs[(p[0], p[2])][0],
                    "tags": list(p[3]),
                    "updated_at": p[4].isoformat(),
                    "preview": revs[(p[0], p[2])][1],
                }
                for p in page
            ],
        }

    def quarantine_rows(self, *, limit: int = 100, offset: int = 0, source: str | None = None) -> dict[str, Any]:
        where, args = "TRUE", []
        if source:
            where, args = "(q.file = ? OR s.name = ?)", [source, source]
        with self.db.connect() as con:
            total = con.execute(
                f"SELECT count(*) FROM quarantine q JOIN sources s ON s.id = q.source_id WHERE {where}", args
            ).fetchall()[0][0]  # type: ignore[index]
            rows = con.execute(
                "SELECT q.file, q.line, q.row_index, q.field, q.message, q.raw, q.source_id "
                f"FROM quarantine q JOIN sources s ON s.id = q.source_id WHERE {where} "
                "ORDER BY q.ts, q.source_id, q.row_index LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return {
            "total": total,
            "rows": [
                {
                    "file": r[0],
                    "line": r[1],
                    "index": r[2],
                    "field": r[3],
                    "message": r[4],
                    "raw": r[5],
                    "source_id": r[6],
                }
                for r in rows
            ],
        }

    def sources(self) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            cur = con.execute("SELECT * FROM sources ORDER BY id")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def iter_current(self, ids: list[str] | None = None, batch: int = 5000) -> Iterator[list[tuple[str, int, str]]]:
        """(id, revision, content JSON) of current revisions, in batches, for the stages."""
        yield from self.db.batches(
            "SELECT c.id, c.revision, r.content FROM conversations c JOIN revisions r "
            "ON r.conversation_id = c.id AND r.revision = c.revision",
            ids,
            batch,
        )

    # ------------------------------------------------------------ changes

    def _check_revision(self, con: duckdb.DuckDBPyConnection, cid: str, expected: int | None) -> int:
        row = first(con.execute("SELECT revision FROM conversations WHERE id = ?", [cid]))
        if row is None:
            raise NotFound(f"no conversation {cid!r}")
        if expected is not None and row[0] != expected:
            raise ConflictError(
                f"conversation {cid} changed since you opened it (you saw revision {expected}, "
                f"it is now at revision {row[0]}); reload it, nothing was overwritten"
            )
        return int(row[0])

    def set_status(
        self,
        ids: list[str],
        status: str,
        *,
        actor: str,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> int:
        if status not in STATUSES:
            raise StoreError(f"unknown status {status!r} (use {', '.join(STATUSES)})")
        at = now()
        with self.db.transaction() as con:
            for cid in ids:
                self._check_revision(con, cid, expected_revision)
            con.register("_ids", pa.table({"id": ids}))
            con.execute(
                "UPDATE conversations SET status = ?, updated_at = ? WHERE id IN (SELECT id FROM _ids)",
                [status, at],
            )
            data = dumps({"status": status, **({"reason": reason} if reason else {})})
            con.execute(
                "INSERT INTO events SELECT nextval('event_ids'), id, 'status', ?, ?, ? FROM _ids",
                [data, actor, at],
            )
        return len(ids)

    def add_event(self, cid: str, kind: str, data: dict[str, Any], *, actor: str) -> None:
        with self.db.transaction() as con:
            self._check_revision(con, cid, None)
            con.execute(
                "INSERT INTO events VALUES (nextval('event_ids'), ?, ?, ?, ?, ?)",
                [cid, kind, dumps(data), actor, now()],
            )

    def set_tags(self, ids: list[str], tags: list[str], *, actor: str, add: bool = True) -> int:
        at = now()
        with self.db.transaction() as con:
            for cid in ids:
                self._check_revision(con, cid, None)
                fn = (
                    "list_distinct(list_concat(tags, ?))"
                    if add
                    else "list_filter(tags, lambda t: NOT list_contains(?, t))"
                )
                con.execute(f"UPDATE conversations SET tags = {fn}, updated_at = ? WHERE id = ?", [tags, at, cid])
                con.execute(
                    "INSERT INTO events VALUES (nextval('event_ids'), ?, 'tag', ?, ?, ?)",
                    [cid, dumps({"tags": tags, "op": "add" if add else "remove"}), actor, at],
                )
        return len(ids)

    def add_revision(
        self,
        cid: str,
        conversation: Conversation,
        *,
        actor: str,
        kind: str = "edit",
        expected_revision: int | None = None,
        note: str | None = None,
        provenance: Provenance | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> int:
        """Append a revision (the previous one stays readable). Returns the new revision number."""
        if con is None:
            with self.db.transaction() as tx:
                return self.add_revision(
                    cid,
                    conversation,
                    actor=actor,
                    kind=kind,
                    expected_revision=expected_revision,
                    note=note,
                    provenance=provenance,
                    con=tx,
                )
        current = self._check_revision(con, cid, expected_revision)
        cj = conversation.content_json()
        new = current + 1
        at = now()
        try:
            con.execute(
                "INSERT INTO revisions VALUES (?, ?, ?, sha256(?), ?, ?, ?, ?, ?, ?, ?)",
                [
                    cid, new, cj, cj, search_text(conversation), len(conversation.messages), kind, actor, note,
                    dumps(provenance.to_dict()) if provenance else None, at,
                ],
            )  # fmt: skip
        except duckdb.ConstraintException:
            # Another session saved revision `new` after this transaction read `current`.
            raise ConflictError(
                f"conversation {cid} changed since you opened it (someone saved revision {new} at the same "
                f"moment); reload it, nothing was overwritten"
            ) from None
        con.execute("UPDATE conversations SET revision = ?, updated_at = ? WHERE id = ?", [new, at, cid])
        return new

    def add_conversation(
        self,
        conversation: Conversation,
        provenance: Provenance,
        *,
        actor: str,
        family_id: str | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> tuple[str, bool]:
        """Add one conversation made inside Sift (e.g. a paraphrase). Returns (id, created)."""
        if con is None:
            with self.db.transaction() as tx:
                return self.add_conversation(conversation, provenance, actor=actor, family_id=family_id, con=tx)
        cj = conversation.content_json()
        cid = content_id(cj)
        at = now()
        exists = first(con.execute("SELECT 1 FROM conversations WHERE id = ?", [cid]))
        if not exists:
            con.execute(
                "INSERT INTO conversations VALUES (?, 'pending', 1, ?, ?, [], ?, ?)",
                [cid, family_id or cid, dumps(conversation.metadata), at, at],
            )
            con.execute(
                "INSERT INTO revisions VALUES (?, 1, ?, sha256(?), ?, ?, ?, ?, NULL, ?, ?)",
                [
                    cid,
                    cj,
                    cj,
                    search_text(conversation),
                    len(conversation.messages),
                    provenance.kind,
                    actor,
                    dumps(provenance.to_dict()),
                    at,
                ],
            )
        con.execute("INSERT INTO provenance VALUES (?, NULL, ?, ?)", [cid, dumps(provenance.to_dict()), at])
        return cid, not exists

    # ------------------------------------------------------------ stage results

    def start_stage_run(
        self,
        run_id: str,
        stage: str,
        config: dict[str, Any],
        *,
        actor: str,
        started_at: datetime | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        """Record a stage run. A stage that writes its results in one transaction records its run
        in that transaction too (`con`), so a crash before the results land leaves no trace."""
        if con is None:
            with self.db.transaction() as tx:
                return self.start_stage_run(run_id, stage, config, actor=actor, started_at=started_at, con=tx)
        con.execute(
            "INSERT INTO stage_runs VALUES (?, ?, ?, NULL, ?, ?, NULL)",
            [run_id, stage, dumps(config), actor, started_at or now()],
        )
        return None

    def replace_flags(
        self,
        stage: str,
        run_id: str,
        flags: list[dict[str, Any]],
        *,
        scope: list[tuple[str, int]] | None = None,
        stats: dict[str, Any] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        """Replace a stage's flags for the (conversation, revision) pairs in scope (None = all).

        Each flag: conversation_id, revision, reason, severity, message, details (optional).
        The stage run's stats land in the same transaction.
        """
        if con is None:
            with self.db.transaction() as tx:
                return self.replace_flags(stage, run_id, flags, scope=scope, stats=stats, con=tx)
        at = now()
        if scope is None:
            con.execute("DELETE FROM flags WHERE stage = ?", [stage])
        elif scope:
            con.register(
                "_scope",
                pa.table({"cid": [s[0] for s in scope], "rev": pa.array([s[1] for s in scope], pa.int32())}),
            )
            con.execute(
                "DELETE FROM flags WHERE stage = ? AND (conversation_id, revision) IN (SELECT (cid, rev) FROM _scope)",
                [stage],
            )
            con.unregister("_scope")
        if flags:
            con.register(
                "_flags",
                pa.table(
                    {
                        "conversation_id": [f["conversation_id"] for f in flags],
                        "revision": pa.array([f["revision"] for f in flags], pa.int32()),
                        "reason": [f["reason"] for f in flags],
                        "severity": [f["severity"] for f in flags],
                        "message": [f["message"] for f in flags],
                        "details": [dumps(f["details"]) if f.get("details") is not None else None for f in flags],
                    }
                ),
            )
            con.execute(
                "INSERT INTO flags SELECT conversation_id, revision, ?, reason, severity, message, details, ?, ? "
                "FROM _flags",
                [stage, run_id, at],
            )
            con.unregister("_flags")
        con.execute("UPDATE stage_runs SET stats = ?, finished_at = ? WHERE id = ?", [dumps(stats or {}), at, run_id])
        return None

    def flag_counts(self, stage: str | None = None) -> dict[str, dict[str, int]]:
        """Counts of current flags per reason, split by severity."""
        sql = (
            "SELECT f.severity, f.reason, count(DISTINCT f.conversation_id) FROM flags f "
            "JOIN conversations c ON c.id = f.conversation_id AND c.revision = f.revision"
        )
        args: list[Any] = []
        if stage:
            sql += " WHERE f.stage = ?"
            args.append(stage)
        out: dict[str, dict[str, int]] = {}
        with self.db.connect() as con:
            for sev, reason, n in con.execute(sql + " GROUP BY 1, 2 ORDER BY 1, 2", args).fetchall():
                out.setdefault(sev, {})[reason] = n
        return out

    def origin_counts(self) -> dict[str, int]:
        """Conversations per origin (the kind of their first revision: import, paraphrase…)."""
        with self.db.connect() as con:
            rows = con.execute(
                "SELECT r.kind, count(*) FROM conversations c JOIN revisions r ON r.conversation_id = c.id "
                "AND r.revision = 1 GROUP BY 1 ORDER BY 1"
            ).fetchall()
        return {str(k): int(n) for k, n in rows}

    def current_flags(self, stage: str, reason: str | None = None, *, limit: int = 1000) -> list[dict[str, Any]]:
        """A stage's flags on current revisions, with each conversation's review status (newest first)."""
        sql = (
            "SELECT f.conversation_id, f.revision, f.reason, f.severity, f.message, f.details, c.status "
            "FROM flags f JOIN conversations c ON c.id = f.conversation_id AND c.revision = f.revision "
            "WHERE f.stage = ?"
        )
        args: list[Any] = [stage]
        if reason:
            sql += " AND f.reason = ?"
            args.append(reason)
        with self.db.connect() as con:
            rows = con.execute(sql + " ORDER BY f.conversation_id, f.reason LIMIT ?", [*args, limit]).fetchall()
        return [
            {
                "conversation_id": r[0],
                "revision": r[1],
                "reason": r[2],
                "severity": r[3],
                "message": r[4],
                "details": json.loads(r[5]) if r[5] else None,
                "status": r[6],
            }
            for r in rows
        ]

    def stage_runs(self, stage: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, stage, config, stats, actor, started_at, finished_at FROM stage_runs"
        args: list[Any] = []
        if stage:
            sql += " WHERE stage = ?"
            args.append(stage)
        with self.db.connect() as con:
            return [
                {
                    "id": r[0],
                    "stage": r[1],
                    "config": json.loads(r[2]),
                    "stats": json.loads(r[3]) if r[3] else None,
                    "actor": r[4],
                    "started_at": r[5].isoformat(),
                    "finished_at": r[6].isoformat() if r[6] else None,
                }
                for r in con.execute(sql + " ORDER BY started_at", args).fetchall()
            ]

    def logical_dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows in a stable order: equal dumps mean equal stores."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.db.connect() as con:
            tables = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
                ).fetchall()
            ]
            for t in tables:
                out[t] = sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
        return out
