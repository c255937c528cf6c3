"""Conversations, revisions, provenance, events, sources, quarantine and stage flags (the core tables and
their migrations); the import pipeline lives in `imports.py`, stage runs and flags in `stage_runs.py`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from curation.records import Conversation, Provenance, content_id
from workbench.store._db import ConflictError, Database, Migration, NotFound, StoreError, dumps, first, now, records
from workbench.store.imports import ImportStore, search_text
from workbench.store.search import TextSearch, index_revision
from workbench.store.stage_runs import StageRunStore

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
        # A literal, case-insensitive substring (% _ and \ are themselves). `ILIKE ? ESCAPE` would
        # do the same but took 1.7x as long at 1M rows (bench_ui); contains(lower()) costs what the
        # old unescaped ILIKE did.
        where.append("contains(lower(r.search_text), lower(?))")
        args.append(text)
    if tag:
        where.append("list_contains(c.tags, ?)")
        args.append(tag)
    if reviewer:
        where.append("EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = c.id AND e.actor = ?)")
        args.append(reviewer)
    join = " JOIN revisions r ON r.conversation_id = c.id AND r.revision = c.revision" if text else ""
    return f"FROM conversations c{join} WHERE {' AND '.join(where)}", args


def text_search(con: duckdb.DuckDBPyConnection, filters: dict[str, Any]) -> TextSearch:
    """The text filter of `filters` answered from the token index (`store/search.py`)."""
    base, args = filtered_from(**{**filters, "text": None})
    scan_base, scan_args = filtered_from(**filters)
    filtered = any(v for k, v in filters.items() if k != "text")
    return TextSearch(con, filters["text"], base, args, scan_base, scan_args, filtered=filtered)


class CoreStore(ImportStore, StageRunStore):
    """Conversations, revisions, events, sources and quarantine; the import pipeline (`ImportStore`)
    and stage runs and flags (`StageRunStore`) are mixed in from their own modules."""

    db: Database

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

    def conversation(self, cid: str, revision: int | None = None) -> Conversation:
        """A conversation's content (its current revision, or `revision`) as the record stages take."""
        return Conversation.from_dict(self.get_conversation(cid, revision))

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
        filters = {"status": status, "source": source, "flag": flag, "text": text, "tag": tag, "reviewer": reviewer}
        base, args = filtered_from(**filters)
        cond, cargs = "", []
        if after is not None:
            at = datetime.fromisoformat(after[0]) if isinstance(after[0], str) else after[0]
            cond, cargs = " AND (c.created_at > ? OR (c.created_at = ? AND c.id > ?))", [at, at, after[1]]
            offset = 0
        with self.db.connect() as con:
            if text and count_limit is not None and offset == 0:
                # The token index: a page and a bounded count without reading every text.
                search = text_search(con, filters)
                hits = search.page((at, after[1]) if after is not None else None, limit)
                total = search.count(count_limit)
                page = []
                if hits:
                    rows = {
                        r[0]: r
                        for r in con.execute(
                            "SELECT id, status, revision, tags, updated_at, created_at FROM conversations "
                            "WHERE id = ANY(?)",
                            [[h[0] for h in hits]],
                        ).fetchall()
                    }
                    page = [rows[h[0]] for h in hits]
            else:
                if count_limit is None:
                    total = con.execute(f"SELECT count(*) {base}", args).fetchall()[0][0]
                else:
                    total = con.execute(
                        f"SELECT count(*) FROM (SELECT 1 {base} LIMIT {int(count_limit) + 1})", args
                    ).fetchall()[0][0]
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
            ).fetchall()[0][0]
            rows = records(
                con.execute(
                    "SELECT q.file, q.line, q.row_index AS index, q.field, q.message, q.raw, q.source_id "
                    f"FROM quarantine q JOIN sources s ON s.id = q.source_id WHERE {where} "
                    "ORDER BY q.ts, q.source_id, q.row_index LIMIT ? OFFSET ?",
                    [*args, limit, offset],
                )
            )
        return {"total": total, "rows": rows}

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
        text = search_text(conversation)
        new = current + 1
        at = now()
        try:
            con.execute(
                "INSERT INTO revisions VALUES (?, ?, ?, sha256(?), ?, ?, ?, ?, ?, ?, ?)",
                [
                    cid, new, cj, cj, text, len(conversation.messages), kind, actor, note,
                    dumps(provenance.to_dict()) if provenance else None, at,
                ],
            )  # fmt: skip
        except duckdb.ConstraintException:
            # Another session saved revision `new` after this transaction read `current`.
            raise ConflictError(
                f"conversation {cid} changed since you opened it (someone saved revision {new} at the same "
                f"moment); reload it, nothing was overwritten"
            ) from None
        created = con.execute("SELECT created_at FROM conversations WHERE id = ?", [cid]).fetchall()[0][0]
        index_revision(con, cid, new, created, text, replaces=current)
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
            text = search_text(conversation)
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
                    text,
                    len(conversation.messages),
                    provenance.kind,
                    actor,
                    dumps(provenance.to_dict()),
                    at,
                ],
            )
            index_revision(con, cid, 1, at, text)
        con.execute("INSERT INTO provenance VALUES (?, NULL, ?, ?)", [cid, dumps(provenance.to_dict()), at])
        return cid, not exists

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
