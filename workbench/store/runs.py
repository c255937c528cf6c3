"""Training runs: one row per run, plus what the workbench ingests from a finished run's folder.

The trainer never touches the store. A run is registered when it is launched (state `queued`),
its state is refreshed from the run folder's status.json, and once it ends the folder's results
(eval.json, metrics.jsonl, samples.jsonl) are ingested in one transaction.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from workbench.store._db import Database, Migration, NotFound, dumps, first, iso, loads, now, records

RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")

MIGRATIONS = [
    Migration(
        "runs",
        1,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, version TEXT NOT NULL, manifest_sha256 TEXT, state TEXT NOT NULL,
            out_dir TEXT NOT NULL, config TEXT NOT NULL, base_model TEXT, backend TEXT, pid INTEGER,
            step INTEGER, total_steps INTEGER, metrics TEXT, eval TEXT, summary TEXT, message TEXT,
            error TEXT, hint TEXT, log_tail TEXT, actor TEXT NOT NULL, created_at TIMESTAMP NOT NULL,
            started_at TIMESTAMP, finished_at TIMESTAMP, ingested_at TIMESTAMP);
        CREATE TABLE run_metrics (run_id TEXT NOT NULL, step INTEGER NOT NULL, data TEXT NOT NULL);
        CREATE TABLE run_samples (
            run_id TEXT NOT NULL, idx INTEGER NOT NULL, prompt TEXT NOT NULL, reference TEXT NOT NULL,
            base TEXT, tuned TEXT NOT NULL, base_scores TEXT, tuned_scores TEXT NOT NULL);
        CREATE INDEX run_metrics_run ON run_metrics (run_id);
        CREATE INDEX run_samples_run ON run_samples (run_id);
        """,
    ),
]

# The run row as services see it (`id` is `run_id` there); JSON columns decoded, timestamps as ISO text.
_COLS = (
    "id AS run_id, version, manifest_sha256, state, out_dir, config, base_model, backend, pid, step, total_steps, "
    "metrics, eval, summary, message, error, hint, log_tail, actor, created_at, started_at, finished_at, ingested_at"
)
_CONVERT = {
    "config": loads,
    "metrics": lambda s: loads(s) or {},
    "eval": loads,
    "summary": loads,
    **{k: iso for k in ("created_at", "started_at", "finished_at", "ingested_at")},
}


class RunsStore:
    db: Database

    def create_run(
        self,
        run_id: str,
        *,
        version: str,
        manifest_sha256: str | None,
        out_dir: str,
        config: dict[str, Any],
        actor: str,
        con: Any = None,
    ) -> None:
        """Record a queued run (`con`: join the caller's transaction, as `sift import-run` does)."""
        with self.db.transaction(con) as tx:
            tx.execute(
                "INSERT INTO runs (id, version, manifest_sha256, state, out_dir, config, base_model, actor, created_at) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                [run_id, version, manifest_sha256, out_dir, dumps(config), config.get("base_model"), actor, now()],
            )

    def _resolve_run(self, con: Any, run_id: str) -> str:
        if first(con.execute("SELECT 1 FROM runs WHERE id = ?", [run_id])):
            return run_id
        matches = con.execute("SELECT id FROM runs WHERE starts_with(id, ?) LIMIT 2", [run_id]).fetchall()
        if len(matches) == 1 and len(run_id) >= 4:
            return str(matches[0][0])
        raise NotFound(f"no run {run_id!r}")

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self.db.connect() as con:
            rid = self._resolve_run(con, run_id)
            (row,) = records(con.execute(f"SELECT {_COLS} FROM runs WHERE id = ?", [rid]), **_CONVERT)
        return row

    def list_runs(self, *, version: str | None = None, states: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        if version:
            where.append("version = ?")
            args.append(version)
        if states:
            where.append("list_contains(?, state)")
            args.append(list(states))
        with self.db.connect() as con:
            return records(
                con.execute(f"SELECT {_COLS} FROM runs WHERE {' AND '.join(where)} ORDER BY created_at, id", args),
                **_CONVERT,
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Progress while a run is live: state, pid, step, total_steps, backend, message, started_at, ..."""
        allowed = {
            "state",
            "pid",
            "step",
            "total_steps",
            "backend",
            "message",
            "error",
            "hint",
            "log_tail",
            "started_at",
            "finished_at",
            "manifest_sha256",
        }
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update run fields {sorted(bad)}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.db.transaction() as con:
            rid = self._resolve_run(con, run_id)
            con.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), rid])

    def ingest_run(
        self,
        run_id: str,
        *,
        status: dict[str, Any],
        metrics: dict[str, Any],
        eval_result: dict[str, Any] | None,
        curve: list[dict[str, Any]],
        samples: list[dict[str, Any]],
        started_at: Any = None,
        finished_at: Any = None,
        con: Any = None,
    ) -> None:
        """Land a finished run's results (replacing any earlier ingest of the same run) in one transaction."""
        with self.db.transaction(con) as tx:
            rid = self._resolve_run(tx, run_id)
            _write_results(tx, rid, status, metrics, eval_result, curve, samples, started_at, finished_at)

    def set_run_metrics(self, run_id: str, metrics: dict[str, Any]) -> None:
        """Replace a run's metrics summary (the regression gate recomputed against another reference)."""
        with self.db.transaction() as con:
            rid = self._resolve_run(con, run_id)
            con.execute("UPDATE runs SET metrics = ? WHERE id = ?", [dumps(metrics), rid])

    def run_curve(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            rid = self._resolve_run(con, run_id)
            rows = con.execute("SELECT data FROM run_metrics WHERE run_id = ? ORDER BY step", [rid]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def run_samples(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            rid = self._resolve_run(con, run_id)
            return records(
                con.execute(
                    "SELECT idx AS index, prompt, reference, base, tuned, base_scores, tuned_scores FROM run_samples "
                    "WHERE run_id = ? ORDER BY idx",
                    [rid],
                ),
                prompt=json.loads,
                base_scores=loads,
                tuned_scores=json.loads,
            )


def _write_results(
    con: Any,
    rid: str,
    status: dict[str, Any],
    metrics: dict[str, Any],
    eval_result: dict[str, Any] | None,
    curve: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    started_at: Any,
    finished_at: Any,
) -> None:
    con.execute("DELETE FROM run_metrics WHERE run_id = ?", [rid])
    con.execute("DELETE FROM run_samples WHERE run_id = ?", [rid])
    con.execute(
        "UPDATE runs SET state = ?, step = ?, total_steps = ?, backend = coalesce(?, backend), metrics = ?, "
        "eval = ?, summary = ?, message = ?, error = ?, hint = ?, log_tail = ?, started_at = coalesce(?, started_at), "
        "finished_at = ?, ingested_at = ? WHERE id = ?",
        [
            status.get("state"),
            status.get("step"),
            status.get("total"),
            status.get("backend"),
            dumps(metrics),
            dumps(eval_result) if eval_result is not None else None,
            dumps(status.get("summary")) if status.get("summary") else None,
            status.get("message"),
            status.get("error"),
            status.get("hint"),
            status.get("log_tail"),
            started_at,
            finished_at,
            now(),
            rid,
        ],
    )
    if curve:
        con.register(
            "_curve",
            pa.table(
                {
                    "step": pa.array([int(c.get("step", 0)) for c in curve], pa.int32()),
                    "data": [dumps(c) for c in curve],
                }
            ),
        )
        con.execute("INSERT INTO run_metrics SELECT ?, step, data FROM _curve", [rid])
        con.unregister("_curve")
    if samples:
        con.register(
            "_samples",
            pa.table(
                {
                    "idx": pa.array([int(s["index"]) for s in samples], pa.int32()),
                    "prompt": [dumps(s.get("prompt")) for s in samples],
                    "reference": [s.get("reference") or "" for s in samples],
                    "base": [s.get("base") for s in samples],
                    "tuned": [s.get("tuned") or "" for s in samples],
                    "base_scores": [dumps(s["base_scores"]) if s.get("base_scores") else None for s in samples],
                    "tuned_scores": [dumps(s.get("tuned_scores") or {}) for s in samples],
                }
            ),
        )
        con.execute(
            "INSERT INTO run_samples SELECT ?, idx, prompt, reference, base, tuned, base_scores, tuned_scores "
            "FROM _samples",
            [rid],
        )
        con.unregister("_samples")
