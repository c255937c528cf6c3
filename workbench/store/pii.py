"""PII findings: one row per detected (or reviewer-added) span of one field of one message of one
conversation revision, with entity, offsets, score, recognizer, the sha256 of the span's text and a
review status. The span's text itself is never copied here: it lives in the revision only.

- `pii_scans` records which revisions were scanned (and by which run), so the app can show progress
  and a freeze can tell "scanned, nothing found" from "never scanned".
- A rescan of a revision replaces its `pending` findings and keeps the reviewed ones (accepted,
  dismissed, added); a detection equal to a reviewed finding is not stored twice.
- A redaction is a new revision (provenance kind "redaction"). The findings it applied keep their
  status and get `redacted_in` = the new revision; dismissed findings move to the new revision with
  shifted offsets, so nobody reviews them twice.
- Every review decision is also an event on the conversation (kind `pii_review`), with actor and time.
- `pii_allow_list` holds the terms a reviewer dismissed and chose to remember: later scans of the
  store never report them (case-insensitive exact match).
- Flags (stage "pii", reason `pii_found`) mark revisions with open findings, so `sift list --flag
  pii_found` and the review pages see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from curation.records import Conversation, Provenance
from curation.stage import WARNING, StageFlag, StageResult
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
from workbench.store.core import CoreStore

MIGRATIONS = [
    Migration(
        "pii",
        1,
        """
        CREATE SEQUENCE pii_finding_ids START 1;
        CREATE TABLE pii_findings (
            id BIGINT PRIMARY KEY, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
            message_index INTEGER NOT NULL, field TEXT NOT NULL, role TEXT NOT NULL,
            span_start INTEGER NOT NULL, span_end INTEGER NOT NULL, entity TEXT NOT NULL,
            score DOUBLE NOT NULL, recognizer TEXT NOT NULL, text_sha256 TEXT NOT NULL,
            status TEXT NOT NULL, run_id TEXT, created_by TEXT NOT NULL, created_at TIMESTAMP NOT NULL,
            reviewed_by TEXT, reviewed_at TIMESTAMP, redacted_in INTEGER);
        CREATE INDEX pii_findings_conv ON pii_findings (conversation_id, revision);
        CREATE TABLE pii_scans (
            conversation_id TEXT NOT NULL, revision INTEGER NOT NULL, run_id TEXT NOT NULL,
            messages INTEGER NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE INDEX pii_scans_conv ON pii_scans (conversation_id, revision);
        """,
    ),
    Migration(
        "pii",
        2,
        """
        CREATE TABLE pii_allow_list (
            term TEXT PRIMARY KEY, entity TEXT, added_by TEXT NOT NULL, added_at TIMESTAMP NOT NULL);
        """,
    ),
]

STAGE = "pii"
REASON = "pii_found"
FINDING_STATUSES = ("pending", "accepted", "dismissed", "added")
OPEN_STATUSES = ("pending", "accepted", "added")
REVIEWED = ("accepted", "dismissed", "added")

_COLS = (
    "f.id, f.conversation_id, f.revision, f.message_index, f.field, f.role, f.span_start, f.span_end, f.entity, "
    "f.score, f.recognizer, f.text_sha256, f.status, f.run_id, f.created_by, f.created_at, f.reviewed_by, "
    "f.reviewed_at, f.redacted_in"
)
_KEYS = (
    "id",
    "conversation_id",
    "revision",
    "message_index",
    "field",
    "role",
    "start",
    "end",
    "entity",
    "score",
    "recognizer",
    "text_sha256",
    "status",
    "run_id",
    "created_by",
    "created_at",
    "reviewed_by",
    "reviewed_at",
    "redacted_in",
)
_CURRENT = "JOIN conversations c ON c.id = f.conversation_id AND c.revision = f.revision"


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(_KEYS, r, strict=True))
    for k in ("created_at", "reviewed_at"):
        if d[k] is not None:
            d[k] = d[k].isoformat()
    return d


def _pairs_table(pairs: Sequence[tuple[str, int]]) -> pa.Table:
    return pa.table({"cid": [p[0] for p in pairs], "rev": pa.array([p[1] for p in pairs], pa.int32())})


def _findings_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    i32 = pa.int32()
    return pa.table(
        {
            "conversation_id": [r["conversation_id"] for r in rows],
            "revision": pa.array([r["revision"] for r in rows], i32),
            "message_index": pa.array([r["message_index"] for r in rows], i32),
            "field": [r["field"] for r in rows],
            "role": [r.get("role") or "" for r in rows],
            "span_start": pa.array([r["start"] for r in rows], i32),
            "span_end": pa.array([r["end"] for r in rows], i32),
            "entity": [r["entity"] for r in rows],
            "score": pa.array([float(r["score"]) for r in rows], pa.float64()),
            "recognizer": [r["recognizer"] for r in rows],
            "text_sha256": [r["text_sha256"] for r in rows],
            "status": [r.get("status", "pending") for r in rows],
            "reviewed_by": pa.array([r.get("reviewed_by") for r in rows], pa.string()),
            "reviewed_at": pa.array([r.get("reviewed_at") for r in rows], pa.timestamp("us")),
        }
    )


class PiiStore(CoreStore):
    """Findings, decisions and redactions; a redaction is a new revision (`CoreStore.add_revision`)."""

    db: Database

    # ------------------------------------------------------------ scans

    def pii_save_scan(
        self,
        run_id: str,
        scanned: Sequence[tuple[str, int, int]],
        findings: Sequence[dict[str, Any]],
        *,
        actor: str,
        stats: dict[str, Any] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> dict[str, int]:
        """Store one scan in one transaction (or in the caller's, `con`). `scanned`: (conversation id,
        revision, messages scanned); `findings`: dicts with conversation_id, revision, message_index,
        field, role, start, end, entity, score, recognizer, text_sha256. Returns how many findings
        were stored and how many matched a reviewed one already there."""
        at = now()
        with self.db.transaction(con) as con:
            pairs = [(c, r) for c, r, _ in scanned]
            if pairs:
                con.register("_scope", _pairs_table(pairs))
                con.execute(
                    "DELETE FROM pii_findings WHERE status = 'pending' AND (conversation_id, revision) IN "
                    "(SELECT (cid, rev) FROM _scope)"
                )
                con.execute(
                    "DELETE FROM pii_scans WHERE (conversation_id, revision) IN (SELECT (cid, rev) FROM _scope)"
                )
                con.unregister("_scope")
                con.register(
                    "_scans",
                    pa.table(
                        {
                            "cid": [s[0] for s in scanned],
                            "rev": pa.array([s[1] for s in scanned], pa.int32()),
                            "n": pa.array([s[2] for s in scanned], pa.int32()),
                        }
                    ),
                )
                con.execute("INSERT INTO pii_scans SELECT cid, rev, ?, n, ? FROM _scans", [run_id, at])
                con.unregister("_scans")
            stored = 0
            if findings:
                con.register("_new", _findings_table(findings))
                before = con.execute("SELECT count(*) FROM pii_findings").fetchall()[0][0]
                con.execute(
                    "INSERT INTO pii_findings SELECT nextval('pii_finding_ids'), n.conversation_id, n.revision, "
                    "n.message_index, n.field, n.role, n.span_start, n.span_end, n.entity, n.score, n.recognizer, "
                    "n.text_sha256, 'pending', ?, ?, ?, NULL, NULL, NULL FROM _new n WHERE NOT EXISTS ("
                    "SELECT 1 FROM pii_findings o WHERE o.conversation_id = n.conversation_id "
                    "AND o.revision = n.revision AND o.message_index = n.message_index AND o.field = n.field "
                    "AND o.span_start = n.span_start AND o.span_end = n.span_end AND o.entity = n.entity) "
                    "ORDER BY n.conversation_id, n.message_index, n.field, n.span_start",
                    [run_id, actor, at],
                )
                stored = con.execute("SELECT count(*) FROM pii_findings").fetchall()[0][0] - before
                con.unregister("_new")
            self._pii_refresh_flags(con, run_id, pairs, stats)
        return {"stored": int(stored), "already_reviewed": len(findings) - int(stored)}

    def _pii_refresh_flags(
        self,
        con: duckdb.DuckDBPyConnection,
        run_id: str,
        pairs: Sequence[tuple[str, int]],
        stats: dict[str, Any] | None,
    ) -> None:
        """Flag each revision in `pairs` that has open findings (one flag per revision, the findings
        in its details so the pages can highlight them)."""
        flags: list[StageFlag] = []
        if pairs:
            con.register("_fl", _pairs_table(pairs))
            rows = con.execute(
                "SELECT f.conversation_id, f.revision, f.id, f.message_index, f.field, f.span_start, f.span_end, "
                "f.entity, f.score, f.status FROM pii_findings f SEMI JOIN _fl ON _fl.cid = f.conversation_id "
                "AND _fl.rev = f.revision WHERE f.status IN ('pending', 'accepted', 'added') "
                "AND f.redacted_in IS NULL ORDER BY 1, 2, 4, 6"
            ).fetchall()
            con.unregister("_fl")
            grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for cid, rev, fid, mi, fld, s, e, ent, score, status in rows:
                grouped.setdefault((cid, rev), []).append(
                    {
                        "id": fid,
                        "message_index": mi,
                        "field": fld,
                        "start": s,
                        "end": e,
                        "entity": ent,
                        "score": score,
                        "status": status,
                    }
                )
            for (cid, rev), fs in grouped.items():
                ents = sorted({f["entity"] for f in fs})
                flags.append(
                    StageFlag(
                        conversation_id=cid,
                        revision=rev,
                        reason=REASON,
                        severity=WARNING,
                        message=f"{len(fs)} unresolved PII finding(s): {', '.join(ents)}",
                        details={"findings": fs},
                    )
                )
        # Through the one stage helper: the scan's run (or a review's) is already recorded, so this
        # replaces the flags of the revisions touched and writes the stats, in the caller's transaction.
        result = StageResult(stage=STAGE, config={}, flags=flags, stats=stats or {}, scope=list(pairs))
        self.record_stage(run_id, result, new_run=False, con=con)

    # ------------------------------------------------------------ reads

    def pii_findings(
        self,
        *,
        conversation_id: str | None = None,
        status: str | None = None,
        entity: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        current: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Findings (of current revisions unless `current=False`), highest score first."""
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        if conversation_id:
            where.append("(f.conversation_id = ? OR starts_with(f.conversation_id, ?))")
            args += [conversation_id, conversation_id]
        if status:
            if status not in FINDING_STATUSES:
                raise StoreError(f"unknown finding status {status!r} (use {', '.join(FINDING_STATUSES)})")
            where.append("f.status = ?")
            args.append(status)
        if entity:
            where.append("f.entity = ?")
            args.append(entity)
        if min_score is not None:
            where.append("f.score >= ?")
            args.append(min_score)
        if max_score is not None:
            where.append("f.score <= ?")
            args.append(max_score)
        join = _CURRENT if current else ""
        base = f"FROM pii_findings f {join} WHERE {' AND '.join(where)}"
        with self.db.connect() as con:
            total = con.execute(f"SELECT count(*) {base}", args).fetchall()[0][0]
            rows = con.execute(
                f"SELECT {_COLS} {base} ORDER BY f.score DESC, f.conversation_id, f.message_index, f.span_start, f.id "
                "LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return {"total": int(total), "findings": [_row(r) for r in rows]}

    def pii_finding(self, finding_id: int) -> dict[str, Any]:
        with self.db.connect() as con:
            r = first(con.execute(f"SELECT {_COLS} FROM pii_findings f WHERE f.id = ?", [finding_id]))
        if r is None:
            raise NotFound(f"no PII finding {finding_id}")
        return _row(r)

    def pii_revision_findings(
        self, pairs: Sequence[tuple[str, int]], *, con: duckdb.DuckDBPyConnection | None = None
    ) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """All findings of the given revisions (not yet applied by a redaction), per revision."""
        out: dict[tuple[str, int], list[dict[str, Any]]] = {p: [] for p in pairs}
        if not pairs:
            return out
        with self.db.connect(con) as con:
            con.register("_p", _pairs_table(pairs))
            rows = con.execute(
                f"SELECT {_COLS} FROM pii_findings f SEMI JOIN _p ON _p.cid = f.conversation_id "
                "AND _p.rev = f.revision WHERE f.redacted_in IS NULL ORDER BY f.conversation_id, f.message_index, "
                "f.field, f.span_start, f.id"
            ).fetchall()
        for r in rows:
            d = _row(r)
            out[(d["conversation_id"], d["revision"])].append(d)
        return out

    def pii_scanned(
        self, pairs: Sequence[tuple[str, int]], *, con: duckdb.DuckDBPyConnection | None = None
    ) -> set[tuple[str, int]]:
        """The (conversation, revision) pairs among `pairs` that a scan (or a redaction) covered."""
        if not pairs:
            return set()
        with self.db.connect(con) as con:
            con.register("_p", _pairs_table(pairs))
            rows = con.execute(
                "SELECT DISTINCT s.conversation_id, s.revision FROM pii_scans s SEMI JOIN _p "
                "ON _p.cid = s.conversation_id AND _p.rev = s.revision"
            ).fetchall()
            con.unregister("_p")
        return {(r[0], int(r[1])) for r in rows}

    def iter_unredacted(self, ids: list[str] | None = None, batch: int = 5000) -> Any:
        """Like `iter_current` (id, current revision, content JSON), but where the current revision
        is a PII redaction, the content of the latest revision before it that is not one. Dedup
        and the freeze's leakage check read this, so that near-duplicate families are a property
        of the conversation, not of how its PII happened to be replaced."""
        sql = (
            "SELECT c.id, c.revision, (SELECT r.content FROM revisions r WHERE r.conversation_id = c.id "
            "AND r.revision <= c.revision AND r.kind <> 'redaction' ORDER BY r.revision DESC LIMIT 1) AS src, "
            "cur.content FROM conversations c JOIN revisions cur ON cur.conversation_id = c.id "
            "AND cur.revision = c.revision"
        )
        for rows in self.db.batches(sql, ids, batch):
            yield [(r[0], r[1], r[2] if r[2] is not None else r[3]) for r in rows]

    def pii_allow_list(self) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            return records(
                con.execute("SELECT term, entity, added_by, added_at FROM pii_allow_list ORDER BY term"), added_at=iso
            )

    def pii_allow_remove(self, term: str) -> int:
        with self.db.transaction() as con:
            n = con.execute("SELECT count(*) FROM pii_allow_list WHERE term = ?", [term]).fetchall()[0][0]
            con.execute("DELETE FROM pii_allow_list WHERE term = ?", [term])
        return int(n)

    def pii_unresolved_conversations(self) -> set[str]:
        """Conversations whose current revision still has PII findings nobody has dealt with: pending
        (not reviewed), or accepted / added by a reviewer but not redacted yet. A dismissed finding
        is resolved; a redaction moves the conversation to a revision without open findings."""
        with self.db.connect() as con:
            return {
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT f.conversation_id FROM pii_findings f {_CURRENT} "
                    "WHERE f.status IN ('pending', 'accepted', 'added') AND f.redacted_in IS NULL"
                ).fetchall()
            }

    def pii_strings(self, conversation_ids: Sequence[str]) -> dict[str, Any]:
        """sha256 and length of every span found in any revision of these conversations (dismissed
        findings aside), for the memorisation probe: never the text."""
        with self.db.connect() as con:
            con.register("_ids", pa.table({"id": pa.array(list(conversation_ids), pa.string())}))
            rows = con.execute(
                "SELECT DISTINCT f.text_sha256, f.span_end - f.span_start FROM pii_findings f "
                "JOIN _ids ON _ids.id = f.conversation_id WHERE f.status <> 'dismissed'"
            ).fetchall()
            con.unregister("_ids")
        return {"sha256": sorted({r[0] for r in rows}), "lengths": sorted({int(r[1]) for r in rows})}

    def pii_overview(self) -> dict[str, Any]:
        """Progress and counts for the PII page: current revisions scanned, findings per entity and
        status, conversations with open findings, redactions made."""
        with self.db.connect() as con:
            total = con.execute("SELECT count(*) FROM conversations").fetchall()[0][0]
            scanned = con.execute(
                "SELECT count(DISTINCT c.id) FROM conversations c JOIN pii_scans s "
                "ON s.conversation_id = c.id AND s.revision = c.revision"
            ).fetchall()[0][0]
            by: dict[str, dict[str, int]] = {}
            for ent, status, n in con.execute(
                f"SELECT f.entity, f.status, count(*) FROM pii_findings f {_CURRENT} GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall():
                by.setdefault(ent, dict.fromkeys(FINDING_STATUSES, 0))[status] = int(n)
            redacted = con.execute(
                "SELECT count(DISTINCT r.conversation_id) FROM revisions r WHERE r.kind = 'redaction'"
            ).fetchall()[0][0]
        return {
            "conversations": int(total),
            "scanned": int(scanned),
            "unresolved": len(self.pii_unresolved_conversations()),
            "redacted_conversations": int(redacted),
            "entities": by,
        }

    # ------------------------------------------------------------ review

    def _pii_check_current(self, con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        con.register("_ids", pa.table({"id": pa.array(list(ids), pa.int64())}))
        rows = con.execute(
            "SELECT f.id, f.conversation_id, f.revision, c.revision, f.redacted_in FROM pii_findings f "
            "LEFT JOIN conversations c ON c.id = f.conversation_id SEMI JOIN _ids ON _ids.id = f.id ORDER BY f.id"
        ).fetchall()
        con.unregister("_ids")
        found = {r[0] for r in rows}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"no PII finding {missing[0]}")
        for fid, cid, rev, cur, red in rows:
            if red is not None or rev != cur:
                raise ConflictError(
                    f"finding {fid} belongs to revision {rev} of conversation {cid}, which is now at revision "
                    f"{cur}; review the current revision's findings (rescan if it has none)"
                )
        return rows

    def pii_set_status(self, ids: Sequence[int], status: str, *, actor: str) -> int:
        """Accept (it is PII: redact it), dismiss (it is not) or reset to pending. Each change is an
        event on its conversation."""
        if status not in ("pending", "accepted", "dismissed"):
            raise StoreError(f"a finding can be set to pending, accepted or dismissed, not {status!r}")
        ids = sorted(set(int(i) for i in ids))
        if not ids:
            return 0
        at = now()
        with self.db.transaction() as con:
            rows = self._pii_check_current(con, ids)
            con.register("_ids", pa.table({"id": pa.array(ids, pa.int64())}))
            reviewer = (None, None) if status == "pending" else (actor, at)
            con.execute(
                "UPDATE pii_findings SET status = ?, reviewed_by = ?, reviewed_at = ? "
                "WHERE id IN (SELECT id FROM _ids)",
                [status, *reviewer],
            )
            con.unregister("_ids")
            self._pii_events(con, rows, {"status": status}, actor, at)
            self._pii_refresh_flags(con, "pii-review", sorted({(r[1], r[2]) for r in rows}), None)
        return len(ids)

    def pii_bulk_accept(self, *, entity: str, min_score: float, actor: str) -> int:
        """Accept every pending finding of `entity` scored at least `min_score` on current revisions."""
        return self.pii_bulk_review("accepted", entity=entity, min_score=min_score, actor=actor)["updated"]

    def pii_bulk_review(
        self,
        status: str,
        *,
        actor: str,
        entity: str | None = None,
        text_sha256: str | None = None,
        recognizer: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        remember: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Set every pending finding of current revisions that matches all the given selectors
        (entity, exact span text by its sha256, recognizer, score range) to `status` (accepted or
        dismissed), in one transaction, with one event per conversation naming the selection.
        `remember` (dismiss only): a term added to the store's allow-list, so later scans skip it.
        With `dry_run` only counts. Returns {"matched", "updated", "status", "by_entity"}."""
        if status not in ("accepted", "dismissed"):
            raise StoreError(f"a bulk review accepts or dismisses, not {status!r}")
        if remember is not None and status != "dismissed":
            raise StoreError("only a dismissal can be remembered in the allow-list")
        where = ["f.status = 'pending'", "f.redacted_in IS NULL"]
        args: list[Any] = []
        selection: dict[str, Any] = {}
        for col, value, op in (
            ("entity", entity, "="),
            ("text_sha256", text_sha256, "="),
            ("recognizer", recognizer, "="),
            ("score", min_score, ">="),
            ("score", max_score, "<="),
        ):
            if value is not None:
                where.append(f"f.{col} {op} ?")
                args.append(value)
                selection[{"score": "min_score" if op == ">=" else "max_score"}.get(col, col)] = value
        if not selection:
            raise StoreError("a bulk review needs at least one selector (entity, text, recognizer, score range)")
        at = now()
        with self.db.transaction() as con:
            rows = con.execute(
                f"SELECT f.id, f.conversation_id, f.revision, f.entity FROM pii_findings f {_CURRENT} "
                f"WHERE {' AND '.join(where)} ORDER BY f.id",
                args,
            ).fetchall()
            by_entity: dict[str, int] = {}
            for r in rows:
                by_entity[r[3]] = by_entity.get(r[3], 0) + 1
            out = {"matched": len(rows), "updated": 0, "status": status, "by_entity": dict(sorted(by_entity.items()))}
            if dry_run:
                return out
            if remember is not None and remember.strip():
                con.execute(
                    "INSERT INTO pii_allow_list VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [remember.strip(), entity, actor, at],
                )
            if not rows:
                return out
            con.register("_ids", pa.table({"id": pa.array([r[0] for r in rows], pa.int64())}))
            con.execute(
                "UPDATE pii_findings SET status = ?, reviewed_by = ?, reviewed_at = ? WHERE id IN (SELECT id FROM _ids)",
                [status, actor, at],
            )
            con.unregister("_ids")
            self._pii_events(con, rows, {"status": status, "bulk": selection}, actor, at)
            self._pii_refresh_flags(con, "pii-review", sorted({(r[1], r[2]) for r in rows}), None)
        out["updated"] = len(rows)
        return out

    def _pii_events(
        self, con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[Any, ...]], data: dict[str, Any], actor: str, at: Any
    ) -> None:
        per: dict[str, list[int]] = {}
        for r in rows:
            per.setdefault(r[1], []).append(int(r[0]))
        for cid, fids in sorted(per.items()):
            con.execute(
                "INSERT INTO events VALUES (nextval('event_ids'), ?, 'pii_review', ?, ?, ?)",
                [cid, dumps({**data, "findings": fids}), actor, at],
            )

    def pii_add_finding(self, finding: dict[str, Any], *, actor: str) -> int:
        """A span the detector missed, added by a reviewer (status `added`: it will be redacted)."""
        at = now()
        with self.db.transaction() as con:
            cur = first(con.execute("SELECT revision FROM conversations WHERE id = ?", [finding["conversation_id"]]))
            if cur is None:
                raise NotFound(f"no conversation {finding['conversation_id']!r}")
            if cur[0] != finding["revision"]:
                raise ConflictError(
                    f"conversation {finding['conversation_id']} is at revision {cur[0]}, not {finding['revision']}; "
                    "reload it, nothing was added"
                )
            fid = con.execute("SELECT nextval('pii_finding_ids')").fetchall()[0][0]
            con.execute(
                "INSERT INTO pii_findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1.0, 'reviewer', ?, 'added', NULL, ?, ?, ?, ?, NULL)",
                [
                    fid,
                    finding["conversation_id"],
                    finding["revision"],
                    finding["message_index"],
                    finding["field"],
                    finding.get("role") or "",
                    finding["start"],
                    finding["end"],
                    finding["entity"],
                    finding["text_sha256"],
                    actor,
                    at,
                    actor,
                    at,
                ],
            )
            self._pii_events(
                con, [(fid, finding["conversation_id"])], {"status": "added", "entity": finding["entity"]}, actor, at
            )
            self._pii_refresh_flags(con, "pii-review", [(finding["conversation_id"], finding["revision"])], None)
        return int(fid)

    # ------------------------------------------------------------ redaction

    def pii_apply_redactions(
        self,
        items: Sequence[dict[str, Any]],
        *,
        actor: str,
        run_id: str,
        parameters: dict[str, Any],
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> list[int]:
        """Write every redaction in one transaction (or in the caller's, `con`). Each item:
        conversation_id, revision (the one redacted: refused if the conversation moved on),
        conversation (the redacted Conversation), applied (finding ids), moved (list of (finding id,
        new start, new end)) for findings that stay on the new revision (dismissed ones). Returns the
        new revision numbers."""
        at = now()
        out: list[int] = []
        with self.db.transaction(con) as con:
            new_pairs: list[tuple[str, int]] = []
            for it in items:
                cid, rev = it["conversation_id"], it["revision"]
                conv: Conversation = it["conversation"]
                prov = Provenance(
                    kind="redaction",
                    actor=actor,
                    parent_id=cid,
                    parent_revision=rev,
                    parameters={**parameters, "run_id": run_id, "findings": sorted(it["applied"])},
                )
                new = self.add_revision(
                    cid,
                    conv,
                    actor=actor,
                    kind="redaction",
                    expected_revision=rev,
                    note=f"PII redaction ({parameters.get('operator')}) of {len(it['applied'])} span(s)",
                    provenance=prov,
                    con=con,
                )
                out.append(new)
                new_pairs.append((cid, new))
                if it["applied"]:
                    con.register("_ids", pa.table({"id": pa.array(sorted(it["applied"]), pa.int64())}))
                    con.execute("UPDATE pii_findings SET redacted_in = ? WHERE id IN (SELECT id FROM _ids)", [new])
                    con.unregister("_ids")
                for fid, s, e in it["moved"]:
                    con.execute(
                        "INSERT INTO pii_findings SELECT nextval('pii_finding_ids'), conversation_id, ?, message_index, "
                        "field, role, ?, ?, entity, score, recognizer, text_sha256, status, run_id, created_by, "
                        "created_at, reviewed_by, reviewed_at, NULL FROM pii_findings WHERE id = ?",
                        [new, s, e, fid],
                    )
                con.execute(
                    "INSERT INTO pii_scans VALUES (?, ?, ?, ?, ?)", [cid, new, run_id, int(it.get("messages", 0)), at]
                )
            self._pii_refresh_flags(con, run_id, new_pairs, None)
        return out

    def pii_redaction_history(self, conversation_id: str) -> list[dict[str, Any]]:
        """The redaction revisions of a conversation with their parameters."""
        with self.db.connect() as con:
            return records(
                con.execute(
                    "SELECT revision, actor, ts AS at, provenance FROM revisions WHERE conversation_id = ? "
                    "AND kind = 'redaction' ORDER BY revision",
                    [conversation_id],
                ),
                at=iso,
                provenance=loads,
            )
