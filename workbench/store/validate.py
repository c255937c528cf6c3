"""Validation results, cached per conversation revision and per (tokenizer, template) identity.

A result row holds the measurement of one revision under one identity (token count, loss spans,
findings without severities), so re-running validation only renders what is new: a new revision
(an edit) or a new tokenizer or template. Flags go to the generic `flags` table (stage "validate").
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from workbench.store._db import Database, Migration, iso, loads, now, records

MIGRATIONS = [
    Migration(
        "validate",
        1,
        """
        CREATE TABLE validate_results (
            conversation_id TEXT NOT NULL, revision INTEGER NOT NULL, identity TEXT NOT NULL,
            tokens INTEGER, loss_tokens INTEGER NOT NULL, measurement TEXT NOT NULL, ts TIMESTAMP NOT NULL,
            PRIMARY KEY (conversation_id, revision, identity));
        """,
    ),
]

_CURRENT = "FROM conversations c JOIN validate_results v ON v.conversation_id = c.id AND v.revision = c.revision"


class ValidateStore:
    db: Database

    def validate_pending(self, identity: str) -> list[tuple[str, int]]:
        """Current revisions with no result under `identity`, in store order."""
        with self.db.connect() as con:
            return [
                (r[0], int(r[1]))
                for r in con.execute(
                    "SELECT c.id, c.revision FROM conversations c WHERE NOT EXISTS (SELECT 1 FROM validate_results v "
                    "WHERE v.conversation_id = c.id AND v.revision = c.revision AND v.identity = ?) "
                    "ORDER BY c.created_at, c.id",
                    [identity],
                ).fetchall()
            ]

    def revision_contents(self, pairs: list[tuple[str, int]]) -> list[tuple[str, int, str]]:
        """(id, revision, content JSON) of the given revisions, in the order given."""
        if not pairs:
            return []
        with self.db.connect() as con:
            con.register(
                "_pairs",
                pa.table({"cid": [p[0] for p in pairs], "rev": pa.array([p[1] for p in pairs], pa.int32())}),
            )
            rows = con.execute(
                "SELECT r.conversation_id, r.revision, r.content FROM revisions r "
                "JOIN _pairs p ON p.cid = r.conversation_id AND p.rev = r.revision"
            ).fetchall()
            con.unregister("_pairs")
        by_key = {(r[0], int(r[1])): r[2] for r in rows}
        return [(c, r, by_key[(c, r)]) for c, r in pairs if (c, r) in by_key]

    def save_validate_results(self, identity: str, rows: list[tuple[str, int, int | None, int, str]]) -> None:
        """Store measurements (id, revision, tokens, loss tokens, measurement JSON) in one transaction;
        a result another process stored first is kept."""
        if not rows:
            return
        at = now()
        with self.db.transaction() as con:
            con.register(
                "_vres",
                pa.table(
                    {
                        "cid": [r[0] for r in rows],
                        "rev": pa.array([r[1] for r in rows], pa.int32()),
                        "tokens": pa.array([r[2] for r in rows], pa.int32()),
                        "loss": pa.array([r[3] for r in rows], pa.int32()),
                        "m": [r[4] for r in rows],
                    }
                ),
            )
            con.execute(
                "INSERT INTO validate_results SELECT cid, rev, ?, tokens, loss, m, ? FROM _vres ON CONFLICT DO NOTHING",
                [identity, at],
            )
            con.unregister("_vres")

    def validate_current_results(self, identity: str) -> list[tuple[str, int, str]]:
        """(id, revision, measurement JSON) of every current revision that has a result under `identity`."""
        with self.db.connect() as con:
            return [
                (r[0], int(r[1]), r[2])
                for r in con.execute(
                    f"SELECT c.id, c.revision, v.measurement {_CURRENT} WHERE v.identity = ? ORDER BY c.created_at, c.id",
                    [identity],
                ).fetchall()
            ]

    def validate_result(self, conversation_id: str, revision: int, identity: str) -> str | None:
        with self.db.connect() as con:
            rows = con.execute(
                "SELECT measurement FROM validate_results WHERE conversation_id = ? AND revision = ? AND identity = ?",
                [conversation_id, revision, identity],
            ).fetchall()
        return rows[0][0] if rows else None

    def validate_results_of(self, conversation_id: str, identity: str) -> dict[int, str]:
        """revision → measurement JSON of one conversation's revisions measured under `identity`."""
        with self.db.connect() as con:
            rows = con.execute(
                "SELECT revision, measurement FROM validate_results WHERE conversation_id = ? AND identity = ?",
                [conversation_id, identity],
            ).fetchall()
        return {int(r[0]): r[1] for r in rows}

    def latest_validate_run(self) -> dict[str, Any] | None:
        """The last finished validation run: id, config (model, identity, ...) and stats."""
        with self.db.connect() as con:
            rows = records(
                con.execute(
                    "SELECT id, config, stats, actor, finished_at FROM stage_runs WHERE stage = 'validate' "
                    "AND finished_at IS NOT NULL ORDER BY finished_at DESC, id DESC LIMIT 1"
                ),
                config=json.loads,
                stats=lambda s: loads(s) or {},
                finished_at=iso,
            )
        return rows[0] if rows else None

    def token_lengths(self, identity: str) -> list[int]:
        """Token counts of the current revisions under `identity` (rows the template rendered)."""
        with self.db.connect() as con:
            return [
                int(r[0])
                for r in con.execute(
                    f"SELECT v.tokens {_CURRENT} WHERE v.identity = ? AND v.tokens IS NOT NULL ORDER BY v.tokens",
                    [identity],
                ).fetchall()
            ]

    def token_counts(
        self, pairs: list[tuple[str, int]], identity: str | None = None
    ) -> dict[tuple[str, int], int] | None:
        """Token counts of the given revisions under `identity` (default: the last validation run's);
        None when validation has not run."""
        if identity is None:
            run = self.latest_validate_run()
            if run is None:
                return None
            identity = run["config"].get("identity")
        if not pairs or identity is None:
            return {}
        with self.db.connect() as con:
            con.register(
                "_pairs",
                pa.table({"cid": [p[0] for p in pairs], "rev": pa.array([p[1] for p in pairs], pa.int32())}),
            )
            rows = con.execute(
                "SELECT v.conversation_id, v.revision, v.tokens FROM validate_results v JOIN _pairs p "
                "ON p.cid = v.conversation_id AND p.rev = v.revision WHERE v.identity = ? AND v.tokens IS NOT NULL",
                [identity],
            ).fetchall()
            con.unregister("_pairs")
        return {(r[0], int(r[1])): int(r[2]) for r in rows}
