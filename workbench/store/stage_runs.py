"""Stage runs and their flags (per conversation revision, with reason code, severity and message)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from curation.stage import StageResult
from workbench.store._db import Database, dumps, iso, loads, now, records


def new_stage_run_id(stage: str) -> str:
    """The one form of a stage run's id: `<stage>-<12 hex>` (e.g. `validate-3f2a…`), so an id in a
    flag, a log or `--json` output says which stage made it."""
    return f"{stage}-{uuid.uuid4().hex[:12]}"


class StageRunStore:
    db: Database

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

    def record_stage(
        self,
        run_id: str,
        result: StageResult,
        *,
        actor: str | None = None,
        started_at: datetime | None = None,
        new_run: bool = True,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        """The one way a stage's result lands (`curation.stage`): the run with its config (unless
        `new_run` is False: a re-run of the same run, e.g. dedup re-clustering after an SME choice),
        then its flags — replacing the stage's earlier flags in `result.scope` — and its stats, all
        in the caller's transaction (`con`), so a crash leaves neither run nor flags."""
        if con is None:
            with self.db.transaction() as tx:
                return self.record_stage(run_id, result, actor=actor, started_at=started_at, new_run=new_run, con=tx)
        if new_run:
            if actor is None:
                raise ValueError("a new stage run needs its actor")
            self.start_stage_run(run_id, result.stage, result.config, actor=actor, started_at=started_at, con=con)
        self.replace_flags(result.stage, run_id, result.flag_rows(), scope=result.scope, stats=result.stats, con=con)
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
            return records(
                con.execute(sql + " ORDER BY f.conversation_id, f.reason LIMIT ?", [*args, limit]), details=loads
            )

    def stage_runs(self, stage: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, stage, config, stats, actor, started_at, finished_at FROM stage_runs"
        args: list[Any] = []
        if stage:
            sql += " WHERE stage = ?"
            args.append(stage)
        with self.db.connect() as con:
            return records(
                con.execute(sql + " ORDER BY started_at", args),
                config=json.loads,
                stats=loads,
                started_at=iso,
                finished_at=iso,
            )
