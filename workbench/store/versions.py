"""Frozen versions: a manifest plus the (conversation, revision, split) rows it pins.

A version is written once, in one transaction, and never changed: this module has no update or
delete path, freezing onto an existing name is refused, and `load_version` recomputes every
pinned revision's content hash so a change made behind the store's back is caught (`sift verify`,
and every export checks it first).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from workbench.store._db import Database, Migration, NotFound, StoreError, first, records

MIGRATIONS = [
    Migration(
        "versions",
        1,
        """
        CREATE TABLE versions (
            name TEXT PRIMARY KEY, parent TEXT, manifest TEXT NOT NULL, manifest_sha256 TEXT NOT NULL,
            train INTEGER NOT NULL, eval INTEGER NOT NULL, actor TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE TABLE version_rows (
            version TEXT NOT NULL, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
            split TEXT NOT NULL, family TEXT NOT NULL, content_sha256 TEXT NOT NULL,
            PRIMARY KEY (version, conversation_id));
        """,
    ),
]


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds") + "Z"


class FrozenVersionError(StoreError):
    """A change to a frozen version was attempted, or one was found."""


class VersionsStore:
    db: Database

    # ------------------------------------------------------------ what a freeze reads

    def freeze_inputs(self, name: str | None = None, parent: str | None = None) -> dict[str, Any]:
        """Everything the freeze step decides on, read on one connection (refused when a version
        `name` exists already).

        conversations: (id, status, revision, family_id, tags, content, content_sha256, kind of the
        current revision, kind of revision 1); parents: (child, parent) pairs from provenance;
        validation_errors / near_duplicates: ids flagged at their current revision; sources:
        (conversation id, source row); stage_runs: the latest finished run of each stage.
        """
        with self.db.connect() as con:
            if name is not None:
                self._refuse_existing(con, name)
            if parent is not None and first(con.execute("SELECT 1 FROM versions WHERE name = ?", [parent])) is None:
                raise NotFound(f"no version {parent!r} (the parent)")
            conversations = con.execute(
                "SELECT c.id, c.status, c.revision, c.family_id, c.tags, r.content, r.content_sha256, r.kind, "
                "r1.kind FROM conversations c "
                "JOIN revisions r ON r.conversation_id = c.id AND r.revision = c.revision "
                "JOIN revisions r1 ON r1.conversation_id = c.id AND r1.revision = 1 ORDER BY c.id"
            ).fetchall()
            parents = con.execute(
                "SELECT DISTINCT conversation_id, parent FROM ("
                " SELECT conversation_id, json_extract_string(data, '$.parent_id') AS parent FROM provenance"
                " UNION ALL SELECT conversation_id, json_extract_string(provenance, '$.parent_id') FROM revisions"
                "  WHERE provenance IS NOT NULL) WHERE parent IS NOT NULL ORDER BY 1, 2"
            ).fetchall()
            flagged = (
                "SELECT DISTINCT f.conversation_id FROM flags f JOIN conversations c "
                "ON c.id = f.conversation_id AND c.revision = f.revision WHERE {} ORDER BY 1"
            )
            validation_errors = [
                r[0] for r in con.execute(flagged.format("f.stage = 'validate' AND f.severity = 'error'")).fetchall()
            ]
            near_duplicates = [r[0] for r in con.execute(flagged.format("f.reason = 'near_duplicate'")).fetchall()]
            sources = con.execute(
                "SELECT DISTINCT p.conversation_id, s.id, s.name, s.format, s.sha256, s.licence FROM provenance p "
                "JOIN sources s ON s.id = p.source_id ORDER BY 1, 2"
            ).fetchall()
            runs = con.execute(
                "SELECT stage, id, config FROM (SELECT *, row_number() OVER (PARTITION BY stage "
                "ORDER BY finished_at DESC, id DESC) AS k FROM stage_runs WHERE finished_at IS NOT NULL) "
                "WHERE k = 1 ORDER BY stage"
            ).fetchall()
        return {
            "conversations": conversations,
            "parents": parents,
            "validation_errors": validation_errors,
            "near_duplicates": near_duplicates,
            "sources": sources,
            "stage_runs": [{"stage": s, "run_id": i, "config": json.loads(c)} for s, i, c in runs],
        }

    # ------------------------------------------------------------ freeze

    def create_version(
        self,
        name: str,
        *,
        manifest_text: str,
        manifest_sha256: str,
        parent: str | None,
        rows: list[tuple[str, int, str, str, str]],
        actor: str,
        ts: datetime,
    ) -> None:
        """Write a version and its rows (conversation id, revision, split, family, content sha256)."""
        with self.db.transaction() as con:
            self._refuse_existing(con, name)
            if parent is not None and first(con.execute("SELECT 1 FROM versions WHERE name = ?", [parent])) is None:
                raise NotFound(f"no version {parent!r} (the parent)")
            n = {s: sum(1 for r in rows if r[2] == s) for s in ("train", "eval")}
            try:
                con.execute(
                    "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [name, parent, manifest_text, manifest_sha256, n["train"], n["eval"], actor, ts],
                )
            except duckdb.ConstraintException:
                raise self._exists(name) from None
            if rows:
                con.register(
                    "_vrows",
                    pa.table(
                        {
                            "conversation_id": [r[0] for r in rows],
                            "revision": pa.array([r[1] for r in rows], pa.int32()),
                            "split": [r[2] for r in rows],
                            "family": [r[3] for r in rows],
                            "content_sha256": [r[4] for r in rows],
                        }
                    ),
                )
                con.execute(
                    "INSERT INTO version_rows SELECT ?, conversation_id, revision, split, family, content_sha256 "
                    "FROM _vrows",
                    [name],
                )
                con.unregister("_vrows")

    @staticmethod
    def _exists(name: str) -> FrozenVersionError:
        return FrozenVersionError(f"version {name!r} already exists and is frozen; freeze under a new name")

    def _refuse_existing(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        if first(con.execute("SELECT 1 FROM versions WHERE name = ?", [name])) is not None:
            raise self._exists(name)

    # ------------------------------------------------------------ reads

    @staticmethod
    def _version_row(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any]:
        rows = records(
            con.execute(
                "SELECT name, parent, manifest AS manifest_text, manifest_sha256, train, eval, actor, ts AS created_at "
                "FROM versions WHERE name = ?",
                [name],
            ),
            created_at=_iso,
        )
        if not rows:
            raise NotFound(f"no version {name!r}")
        return rows[0]

    def changed_since_stage(self, stage: str) -> list[str] | None:
        """Conversations whose current revision is newer than the start of `stage`'s last finished run
        (edited, redacted or imported since): that run never saw them. None when the stage never ran."""
        with self.db.connect() as con:
            row = first(
                con.execute(
                    "SELECT max(started_at) FROM stage_runs WHERE stage = ? AND finished_at IS NOT NULL", [stage]
                )
            )
            if row is None or row[0] is None:
                return None
            return [
                r[0]
                for r in con.execute(
                    "SELECT c.id FROM conversations c JOIN revisions r ON r.conversation_id = c.id "
                    "AND r.revision = c.revision WHERE r.ts > ? ORDER BY c.id",
                    [row[0]],
                ).fetchall()
            ]

    def get_version(self, name: str) -> dict[str, Any]:
        with self.db.connect() as con:
            return self._version_row(con, name)

    def list_versions(self) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            return records(
                con.execute(
                    "SELECT name, parent, manifest_sha256, train, eval, actor, ts AS created_at FROM versions "
                    "ORDER BY ts, name"
                ),
                created_at=_iso,
            )

    _ROWS = (
        "SELECT split, conversation_id, revision, family, content_sha256 FROM version_rows "
        "WHERE version = ? ORDER BY split, conversation_id"
    )

    def version_rows(self, name: str) -> list[tuple[str, str, int, str, str]]:
        """(split, conversation id, revision, family, content sha256), by split then id."""
        with self.db.connect() as con:
            self._version_row(con, name)
            return con.execute(self._ROWS, [name]).fetchall()

    def ablation_inputs(self, name: str) -> dict[str, Any]:
        """What a leave-one-stage-out version of `name` is built from, read on one connection.

        left_out: (id, status, revision, family_id, content, content_sha256, revision kind, blocking
        stages, last reject reason) of each conversation not in the version, where blocking stages
        are the stages of its current revision's flags that keep it out or that a reviewer acts on
        (severity error, `near_duplicate`, `label_suspect`; "pii" for an unresolved PII finding);
        before_redaction: (id, pinned revision, revision before it that no redaction made, its
        content, its sha256) for each pinned revision a redaction made (and, for left-out rows, each
        current one); pii_findings: (id, revision, findings not dismissed) of every revision named."""
        with self.db.connect() as con:
            version = self._version_row(con, name)
            out = "c.id NOT IN (SELECT conversation_id FROM version_rows WHERE version = ?)"
            left_out = con.execute(
                "SELECT c.id, c.status, c.revision, c.family_id, r.content, r.content_sha256, r.kind, "
                " (SELECT list(DISTINCT f.stage ORDER BY f.stage) FROM flags f WHERE f.conversation_id = c.id "
                "   AND f.revision = c.revision AND (f.severity = 'error' OR f.reason IN "
                "   ('near_duplicate', 'label_suspect'))), "
                " (SELECT json_extract_string(e.data, '$.reason') FROM events e WHERE e.conversation_id = c.id "
                "   AND e.kind = 'status' AND json_extract_string(e.data, '$.status') = 'rejected' "
                "   ORDER BY e.ts DESC, e.id DESC LIMIT 1) "
                "FROM conversations c JOIN revisions r ON r.conversation_id = c.id AND r.revision = c.revision "
                f"WHERE {out} ORDER BY c.id",
                [name],
            ).fetchall()
            pinned = con.execute(
                "SELECT v.conversation_id, v.revision FROM version_rows v WHERE v.version = ? "
                f"UNION ALL SELECT c.id, c.revision FROM conversations c WHERE {out}",
                [name, name],
            ).fetchall()
            con.register(
                "_abl_pins",
                pa.table({"cid": [p[0] for p in pinned], "rev": pa.array([p[1] for p in pinned], pa.int32())}),
            )
            before = con.execute(
                "SELECT p.cid, p.rev, b.revision, b.content, b.content_sha256 FROM _abl_pins p "
                "JOIN revisions r ON r.conversation_id = p.cid AND r.revision = p.rev AND r.kind = 'redaction' "
                "JOIN revisions b ON b.conversation_id = p.cid AND b.revision = (SELECT max(x.revision) "
                " FROM revisions x WHERE x.conversation_id = p.cid AND x.revision < p.rev AND x.kind <> 'redaction') "
                "ORDER BY 1"
            ).fetchall()
            con.unregister("_abl_pins")
        findings = self.pii_counts([*pinned, *((b[0], b[2]) for b in before)])
        return {"version": version, "left_out": left_out, "before_redaction": before, "pii_findings": findings}

    def pii_counts(self, pairs: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
        """(id, revision, PII findings not dismissed) for the (id, revision) pairs that have any."""
        with self.db.connect() as con:
            has_pii = first(
                con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'pii_findings'")
            )
            if not pairs or not has_pii or not has_pii[0]:
                return []
            con.register(
                "_pii_pairs",
                pa.table({"cid": [p[0] for p in pairs], "rev": pa.array([p[1] for p in pairs], pa.int32())}),
            )
            try:
                return con.execute(
                    "SELECT f.conversation_id, f.revision, count(*) FROM pii_findings f "
                    "JOIN (SELECT DISTINCT cid, rev FROM _pii_pairs) p ON p.cid = f.conversation_id "
                    "AND p.rev = f.revision WHERE f.status <> 'dismissed' GROUP BY 1, 2 ORDER BY 1, 2"
                ).fetchall()
            finally:
                con.unregister("_pii_pairs")

    def load_version(self, name: str, *, contents: bool = False) -> dict[str, Any]:
        """One read of a version: its row, its pinned rows, the integrity problems found by
        recomputing each pinned revision's content hash, and (optionally) the pinned contents as
        (split, conversation id, revision, content JSON)."""
        with self.db.connect() as con:
            out: dict[str, Any] = {
                "version": self._version_row(con, name),
                "rows": con.execute(self._ROWS, [name]).fetchall(),
            }
            bad = con.execute(
                "SELECT v.conversation_id, v.revision, r.content IS NULL FROM version_rows v "
                "LEFT JOIN revisions r ON r.conversation_id = v.conversation_id AND r.revision = v.revision "
                "WHERE v.version = ? AND (r.content IS NULL OR sha256(r.content) <> v.content_sha256) "
                "ORDER BY 1",
                [name],
            ).fetchall()
            out["problems"] = [
                f"store: conversation {cid} revision {rev} "
                + ("is missing" if missing else "no longer has the content it had when frozen")
                for cid, rev, missing in bad
            ]
            # The other rows a version depends on: each conversation (its family and history hang
            # off it) and the parent version it was frozen from.
            gone = con.execute(
                "SELECT v.conversation_id FROM version_rows v ANTI JOIN conversations c ON c.id = v.conversation_id "
                "WHERE v.version = ? ORDER BY 1",
                [name],
            ).fetchall()
            if gone:
                ids = [r[0] for r in gone]
                out["problems"].append(
                    f"store: {len(ids)} conversation row(s) the version pins are missing from conversations "
                    f"({', '.join(ids[:5])})"
                )
            parent = out["version"].get("parent")
            if parent and not con.execute("SELECT 1 FROM versions WHERE name = ?", [parent]).fetchall():
                out["problems"].append(f"store: parent version {parent!r} is missing from versions")
            out["contents"] = (
                con.execute(
                    "SELECT v.split, v.conversation_id, v.revision, r.content FROM version_rows v "
                    "JOIN revisions r ON r.conversation_id = v.conversation_id AND r.revision = v.revision "
                    "WHERE v.version = ? ORDER BY v.split, v.conversation_id",
                    [name],
                ).fetchall()
                if contents
                else None
            )
        return out
