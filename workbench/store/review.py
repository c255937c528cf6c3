"""Review: per-store settings (guide, tag lists), the queue, guarded decisions, bulk actions,
progress and lineage.

Every change is one transaction and leaves an event with actor and time. Bulk actions work on the
set a filter matches, in SQL, and refuse to run when that set no longer has the size the reviewer
confirmed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb

from workbench.store._db import (
    ConflictError,
    Database,
    Migration,
    NotFound,
    StoreError,
    dumps,
    first,
    iso,
    loads,
    now,
    records,
)
from workbench.store.core import STATUSES, filtered_from, text_search

# The index: review pages read one conversation's revisions at a time, and DuckDB uses a
# single-column index for that (not the composite primary key): ~1 ms instead of a scan at 1M rows.
MIGRATIONS = [
    Migration(
        "review",
        1,
        """
        CREATE TABLE settings (
            key TEXT PRIMARY KEY, value TEXT NOT NULL, actor TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE INDEX IF NOT EXISTS revisions_conv ON revisions (conversation_id);
        """,
    ),
]

BUCKETS = ("hour", "day", "week")
Cursor = tuple[datetime, str]


def _resolve(con: duckdb.DuckDBPyConnection, cid: str) -> tuple[str, str, int]:
    """(id, status, revision) of a conversation, by id or unique id prefix."""
    row = first(con.execute("SELECT id, status, revision FROM conversations WHERE id = ?", [cid]))
    if row is None and len(cid) >= 4:
        rows = con.execute(
            "SELECT id, status, revision FROM conversations WHERE starts_with(id, ?) LIMIT 2", [cid]
        ).fetchall()
        row = rows[0] if len(rows) == 1 else None
    if row is None:
        raise NotFound(f"no conversation {cid!r}")
    return row[0], row[1], int(row[2])


def _bulk_target(action: str, status: str | None, tags: list[str] | None) -> tuple[str, list[Any]]:
    """The extra condition that keeps a bulk action to the rows it would change."""
    if action == "status":
        return "c.status <> ?", [status]
    if action == "tag_add":
        return "NOT list_has_all(c.tags, ?)", [list(tags or [])]
    if action == "tag_remove":
        return "list_has_any(c.tags, ?)", [list(tags or [])]
    raise StoreError(f"unknown bulk action {action!r} (use status, tag_add, tag_remove)")


class ReviewStore:
    db: Database

    # ------------------------------------------------------------ settings

    def get_setting(self, key: str) -> str | None:
        with self.db.connect() as con:
            row = first(con.execute("SELECT value FROM settings WHERE key = ?", [key]))
        return None if row is None else str(row[0])

    def get_settings(self, prefix: str = "") -> dict[str, str]:
        """Every setting whose key starts with `prefix`, in one read."""
        with self.db.connect() as con:
            return dict(con.execute("SELECT key, value FROM settings WHERE starts_with(key, ?)", [prefix]).fetchall())

    def conversation_state(self, cid: str) -> tuple[str, str, int]:
        """(id, status, current revision), by id or unique id prefix."""
        with self.db.connect() as con:
            return _resolve(con, cid)

    def set_setting(self, key: str, value: str, *, actor: str) -> None:
        """Set one setting; the event keeps the value, so every earlier guide stays readable."""
        at = now()
        with self.db.transaction() as con:
            con.execute(
                "INSERT INTO settings VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value, actor = excluded.actor, ts = excluded.ts",
                [key, value, actor, at],
            )
            con.execute(
                "INSERT INTO events VALUES (nextval('event_ids'), NULL, 'setting', ?, ?, ?)",
                [dumps({"key": key, "value": value}), actor, at],
            )

    def flag_reasons(self) -> list[str]:
        """Every flag reason in the store (for filter choices; no join, so cheap at any size)."""
        with self.db.connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT reason FROM flags ORDER BY 1").fetchall()]

    # ------------------------------------------------------------ the queue

    def count_matching(self, filters: dict[str, Any], *, limit: int | None = None) -> int:
        """How many conversations match; with `limit`, counting stops past it (the result is then
        `limit + 1`, shown as "limit+"), so a page never pays for an exact count of a million."""
        base, args = filtered_from(**filters)
        sql = (
            f"SELECT count(*) {base}"
            if limit is None
            else f"SELECT count(*) FROM (SELECT 1 {base} LIMIT {int(limit) + 1})"
        )
        with self.db.connect() as con:
            if filters.get("text") and limit is not None:
                return text_search(con, filters).count(limit)
            return int(con.execute(sql, args).fetchall()[0][0])

    def queue_next(
        self, filters: dict[str, Any], *, after: Cursor | None = None, limit: int = 1
    ) -> list[tuple[str, Cursor]]:
        """The first `limit` conversations under `filters` after `after` (keyset order:
        created_at, id). One scan finds 25 as fast as 1, so a page may ask for a few ahead."""
        if filters.get("text"):
            with self.db.connect() as con:
                return [(cid, (at, cid)) for cid, at in text_search(con, filters).page(after, limit)]
        base, args = filtered_from(**filters)
        cond = ""
        if after is not None:
            cond = " AND (c.created_at > ? OR (c.created_at = ? AND c.id > ?))"
            args = [*args, after[0], after[0], after[1]]
        with self.db.connect() as con:
            rows = con.execute(
                f"SELECT c.id, c.created_at {base}{cond} ORDER BY c.created_at, c.id LIMIT ?", [*args, limit]
            ).fetchall()
        return [(r[0], (r[1], r[0])) for r in rows]

    def cursor_of(self, cid: str) -> Cursor:
        with self.db.connect() as con:
            row = first(con.execute("SELECT created_at, id FROM conversations WHERE id = ?", [cid]))
        if row is None:
            raise NotFound(f"no conversation {cid!r}")
        return (row[0], row[1])

    def decide(
        self,
        cid: str,
        status: str,
        *,
        actor: str,
        reason: str | None,
        expected_revision: int,
        expected_status: str,
    ) -> None:
        """Set one conversation's status unless someone changed it since the reviewer opened it."""
        if status not in STATUSES:
            raise StoreError(f"unknown status {status!r} (use {', '.join(STATUSES)})")
        at = now()
        with self.db.transaction() as con:
            cid, cur_status, cur_rev = _resolve(con, cid)
            if cur_rev != expected_revision:
                raise ConflictError(
                    f"conversation {cid} changed since you opened it (you saw revision {expected_revision}, "
                    f"it is now at revision {cur_rev}); reload it, nothing was overwritten"
                )
            if cur_status != expected_status:
                last = first(
                    con.execute(
                        "SELECT actor, ts FROM events WHERE conversation_id = ? AND kind = 'status' "
                        "ORDER BY id DESC LIMIT 1",
                        [cid],
                    )
                )
                who = f" by {last[0]} at {last[1]:%Y-%m-%d %H:%M}" if last else ""
                raise ConflictError(
                    f"conversation {cid} was marked {cur_status}{who} since you opened it "
                    f"(you saw {expected_status}); reload it, nothing was overwritten"
                )
            con.execute("UPDATE conversations SET status = ?, updated_at = ? WHERE id = ?", [status, at, cid])
            con.execute(
                "INSERT INTO events VALUES (nextval('event_ids'), ?, 'status', ?, ?, ?)",
                [cid, dumps({"status": status, **({"reason": reason} if reason else {})}), actor, at],
            )

    # ------------------------------------------------------------ bulk

    def bulk_count(
        self, filters: dict[str, Any], action: str, *, status: str | None = None, tags: list[str] | None = None
    ) -> int:
        """How many conversations a bulk action on `filters` would change."""
        base, args = filtered_from(**filters)
        extra, extra_args = _bulk_target(action, status, tags)
        with self.db.connect() as con:
            return int(con.execute(f"SELECT count(*) {base} AND {extra}", [*args, *extra_args]).fetchall()[0][0])

    def bulk_apply(
        self,
        filters: dict[str, Any],
        action: str,
        *,
        expected: int,
        actor: str,
        status: str | None = None,
        reason: str | None = None,
        tags: list[str] | None = None,
    ) -> int:
        """Apply a bulk action to the rows it would change; refused if their number is not `expected`."""
        if action == "status" and status not in STATUSES:
            raise StoreError(f"unknown status {status!r} (use {', '.join(STATUSES)})")
        if action != "status" and not tags:
            raise StoreError("name at least one tag")
        base, args = filtered_from(**filters)
        extra, extra_args = _bulk_target(action, status, tags)
        at = now()
        with self.db.transaction() as con:
            # Fixed first: a status update changes what a status filter matches.
            con.execute(f"CREATE TEMP TABLE _bulk AS SELECT c.id {base} AND {extra}", [*args, *extra_args])
            try:
                n = int(con.execute("SELECT count(*) FROM _bulk").fetchall()[0][0])
                if n != expected:
                    raise ConflictError(
                        f"the filter now matches {n} conversations to change, not the {expected} you confirmed "
                        "(someone else is reviewing too); nothing was changed, check the count and confirm again"
                    )
                if action == "status":
                    con.execute(
                        "UPDATE conversations SET status = ?, updated_at = ? WHERE id IN (SELECT id FROM _bulk)",
                        [status, at],
                    )
                    data: dict[str, Any] = {"status": status, "bulk": True, **({"reason": reason} if reason else {})}
                    kind = "status"
                else:
                    fn = (
                        "list_distinct(list_concat(tags, ?))"
                        if action == "tag_add"
                        else "list_filter(tags, lambda t: NOT list_contains(?, t))"
                    )
                    con.execute(
                        f"UPDATE conversations SET tags = {fn}, updated_at = ? WHERE id IN (SELECT id FROM _bulk)",
                        [list(tags or []), at],
                    )
                    data = {"tags": list(tags or []), "op": "add" if action == "tag_add" else "remove", "bulk": True}
                    kind = "tag"
                con.execute(
                    "INSERT INTO events SELECT nextval('event_ids'), id, ?, ?, ?, ? FROM _bulk",
                    [kind, dumps(data), actor, at],
                )
            finally:
                con.execute("DROP TABLE IF EXISTS _bulk")
        return n

    # ------------------------------------------------------------ progress

    def progress(self, *, bucket: str = "day") -> dict[str, Any]:
        """Counts by status, by reviewer and by flag; reviewing actions per time bucket."""
        if bucket not in BUCKETS:
            raise StoreError(f"unknown bucket {bucket!r} (use {', '.join(BUCKETS)})")
        actions = (
            "SELECT actor, ts, CASE kind WHEN 'status' THEN json_extract_string(data, '$.status') "
            "ELSE kind END AS action FROM events WHERE conversation_id IS NOT NULL "
            "AND kind IN ('status', 'comment', 'tag') "
            "UNION ALL SELECT actor, ts, 'edit' FROM revisions WHERE kind = 'edit'"
        )
        with self.db.connect() as con:
            by_status = dict.fromkeys(STATUSES, 0)
            for s, n in con.execute("SELECT status, count(*) FROM conversations GROUP BY 1").fetchall():
                by_status[s] = n
            reviewers = records(
                con.execute(
                    "SELECT actor AS reviewer, count(*) FILTER (action = 'accepted') AS accepted, "
                    "count(*) FILTER (action = 'rejected') AS rejected, count(*) FILTER (action = 'pending') AS reset, "
                    "count(*) FILTER (action = 'edit') AS edits, count(*) FILTER (action = 'comment') AS comments, "
                    "count(*) FILTER (action = 'tag') AS tags, NULL AS conversations, max(ts) AS last_active "
                    f"FROM ({actions}) GROUP BY actor ORDER BY actor"
                ),
                last_active=iso,
            )
            touched = dict(
                con.execute(
                    "SELECT actor, count(DISTINCT conversation_id) FROM ("
                    " SELECT actor, conversation_id FROM events WHERE conversation_id IS NOT NULL"
                    "  AND kind IN ('status', 'comment', 'tag')"
                    " UNION ALL SELECT actor, conversation_id FROM revisions WHERE kind = 'edit') GROUP BY 1"
                ).fetchall()
            )
            for r in reviewers:
                r["conversations"] = touched.get(r["reviewer"], 0)
            flags = records(
                con.execute(
                    "SELECT f.stage, f.reason, f.severity, count(*) AS conversations, "
                    "count(*) FILTER (c.status = 'pending') AS pending, count(*) FILTER (c.status = 'accepted') "
                    "AS accepted, count(*) FILTER (c.status = 'rejected') AS rejected FROM "
                    "(SELECT DISTINCT conversation_id, revision, stage, reason, severity FROM flags) f "
                    "JOIN conversations c ON c.id = f.conversation_id AND c.revision = f.revision "
                    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                )
            )
            throughput = records(
                con.execute(
                    f"SELECT date_trunc('{bucket}', ts) AS at, actor AS reviewer, action, count(*) AS n "
                    f"FROM ({actions}) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                ),
                at=iso,
            )
        return {
            "by_status": by_status,
            "reviewers": reviewers,
            "flags": flags,
            "throughput": throughput,
            "bucket": bucket,
        }

    # ------------------------------------------------------------ lineage

    def lineage(self, cid: str, *, children_limit: int = 100) -> dict[str, Any]:
        """Where a conversation came from and what came of it."""
        with self.db.connect() as con:
            cid, status, revision = _resolve(con, cid)
            family = first(con.execute("SELECT family_id FROM conversations WHERE id = ?", [cid]))
            family_id = family[0] if family else cid
            sources = [
                {
                    **json.loads(r[0]),
                    "recorded_at": r[1].isoformat(),
                    "source_id": r[2],
                    "file": r[3],
                    "path": r[4],
                    "file_sha256": r[5],
                    "licence": r[6],
                    "imported_by": r[7],
                }
                for r in con.execute(
                    "SELECT p.data, p.ts, s.id, s.name, s.path, s.sha256, s.licence, s.actor FROM provenance p "
                    "LEFT JOIN sources s ON s.id = p.source_id WHERE p.conversation_id = ? ORDER BY p.ts, s.id",
                    [cid],
                ).fetchall()
            ]
            revisions = records(
                con.execute(
                    "SELECT revision, kind, actor, ts AS at, note, provenance, n_messages AS turns, content_sha256 "
                    "FROM revisions WHERE conversation_id = ? ORDER BY revision",
                    [cid],
                ),
                at=iso,
                provenance=loads,
            )
            parent_sql = (
                "SELECT DISTINCT parent FROM ("
                " SELECT json_extract_string(data, '$.parent_id') AS parent FROM provenance WHERE conversation_id = ?"
                " UNION ALL SELECT json_extract_string(provenance, '$.parent_id') FROM revisions"
                "  WHERE conversation_id = ? AND provenance IS NOT NULL) WHERE parent IS NOT NULL ORDER BY 1"
            )
            parent_ids = [r[0] for r in con.execute(parent_sql, [cid, cid]).fetchall()]
            children_sql = (
                "SELECT DISTINCT conversation_id FROM ("
                " SELECT conversation_id, json_extract_string(data, '$.parent_id') AS parent FROM provenance"
                " UNION ALL SELECT conversation_id, json_extract_string(provenance, '$.parent_id') FROM revisions"
                "  WHERE provenance IS NOT NULL) WHERE parent = ? AND conversation_id <> ?"
            )
            n_children = int(con.execute(f"SELECT count(*) FROM ({children_sql})", [cid, cid]).fetchall()[0][0])
            child_ids = [
                r[0] for r in con.execute(f"{children_sql} ORDER BY 1 LIMIT ?", [cid, cid, children_limit]).fetchall()
            ]

            def described(ids: list[str]) -> list[dict[str, Any]]:
                if not ids:
                    return []
                rows = con.execute(
                    "SELECT c.id, c.status, c.revision, r.provenance, left(r.search_text, 120) FROM conversations c "
                    "JOIN revisions r ON r.conversation_id = c.id AND r.revision = 1 WHERE list_contains(?, c.id) "
                    "ORDER BY c.id",
                    [ids],
                ).fetchall()
                found = {r[0] for r in rows}
                out = [
                    {
                        "id": r[0],
                        "status": r[1],
                        "revision": r[2],
                        "made_by": json.loads(r[3]) if r[3] else None,
                        "preview": r[4],
                    }
                    for r in rows
                ]
                return out + [{"id": i, "status": "not in this store"} for i in ids if i not in found]

            family_size = int(
                con.execute("SELECT count(*) FROM conversations WHERE family_id = ?", [family_id]).fetchall()[0][0]
            )
            versions = self._versions_of(con, cid)
            parents = described(parent_ids)
            children = described(child_ids)
        return {
            "id": cid,
            "status": status,
            "revision": revision,
            "family_id": family_id,
            "family_size": family_size,
            "sources": sources,
            "revisions": revisions,
            "redactions": [r for r in revisions if r["kind"] == "redaction"],
            "parents": parents,
            "children": children,
            "children_total": n_children,
            "versions": versions,
        }

    @staticmethod
    def _versions_of(con: duckdb.DuckDBPyConnection, cid: str) -> list[dict[str, Any]] | None:
        """The frozen versions pinning this conversation; None when the store has no versions yet."""
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "AND table_name IN ('versions', 'version_rows')"
            ).fetchall()
        }
        if tables != {"versions", "version_rows"}:
            return None
        return [
            {"version": r[0], "revision": r[1], "split": r[2], "frozen_at": r[3].isoformat(), "frozen_by": r[4]}
            for r in con.execute(
                "SELECT v.name, vr.revision, vr.split, v.ts, v.actor FROM version_rows vr "
                "JOIN versions v ON v.name = vr.version WHERE vr.conversation_id = ? ORDER BY v.ts, v.name",
                [cid],
            ).fetchall()
        ]

    def revision_messages(self, cid: str, revision: int) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            row = first(
                con.execute("SELECT content FROM revisions WHERE conversation_id = ? AND revision = ?", [cid, revision])
            )
        if row is None:
            raise NotFound(f"conversation {cid} has no revision {revision}")
        return list(json.loads(row[0])["messages"])
