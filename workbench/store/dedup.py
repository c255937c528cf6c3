"""Dedup results: signatures per conversation revision and parameters, clusters, pairs, SME choices.

- `dedup_signatures` is a cache keyed by (conversation, revision, signature parameters): a re-run
  after new imports computes signatures only for what is new or edited.
- `dedup_members` / `dedup_pairs` hold each run's clusters (two or more members) and the pairs
  that were merged or sit near the threshold; the latest finished run is the current answer.
- `dedup_keepers` (an SME pins the copy to keep) and `dedup_decisions` (an SME calls a borderline
  pair a duplicate or distinct) are keyed by conversation ids, so they outlive runs.
- Flags for non-keepers go through the generic `flags` table (stage `dedup`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from curation.dedup.minhash import Features, signature_bytes
from curation.stage import StageResult
from workbench.store._db import Database, Migration, NotFound, StoreError, dumps, first, now, records
from workbench.store.stage_runs import StageRunStore

MIGRATIONS = [
    Migration(
        "dedup",
        1,
        """
        CREATE TABLE dedup_signatures (
            conversation_id TEXT NOT NULL, revision INTEGER NOT NULL, params_key TEXT NOT NULL,
            signature BLOB NOT NULL, norm_hash UBIGINT NOT NULL, n_shingles INTEGER NOT NULL,
            answer_chars BIGINT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE INDEX dedup_sig_key ON dedup_signatures (params_key, conversation_id);
        CREATE TABLE dedup_members (
            run_id TEXT NOT NULL, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
            cluster_id TEXT NOT NULL, cluster_size INTEGER NOT NULL, is_keeper BOOLEAN NOT NULL,
            keeper_reason TEXT NOT NULL, jaccard DOUBLE NOT NULL, exact BOOLEAN NOT NULL);
        CREATE INDEX dedup_members_run ON dedup_members (run_id, cluster_id);
        CREATE TABLE dedup_pairs (
            run_id TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL,
            jaccard DOUBLE NOT NULL, exact BOOLEAN NOT NULL, merged BOOLEAN NOT NULL,
            borderline BOOLEAN NOT NULL);
        CREATE INDEX dedup_pairs_run ON dedup_pairs (run_id);
        CREATE TABLE dedup_keepers (
            conversation_id TEXT NOT NULL, actor TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE TABLE dedup_decisions (
            a TEXT NOT NULL, b TEXT NOT NULL, decision TEXT NOT NULL, actor TEXT NOT NULL,
            ts TIMESTAMP NOT NULL);
        """,
    ),
]

DECISIONS = ("duplicate", "distinct")


def _preview(content: str | None, limit: int = 160) -> str:
    """The first user turn (what tells near-duplicates apart), else the first turn with text."""
    if not content:
        return ""
    msgs = json.loads(content).get("messages") or []
    texts = [(m.get("role"), m.get("content")) for m in msgs if isinstance(m.get("content"), str) and m.get("content")]
    user = [t for r, t in texts if r == "user"]
    text = user[0] if user else (texts[0][1] if texts else "")
    return " ".join(text.split())[:limit]


@dataclass(frozen=True)
class Inventory:
    """Current conversations in import order, position by position: id, revision, review status
    and when an SME pinned it as its cluster's keeper (epoch µs, None if never)."""

    ids: list[str]
    revisions: list[int]
    statuses: list[str]
    pinned: list[int | None]


@dataclass(frozen=True)
class SignatureRows:
    """Signatures of conversation revisions and what else dedup keeps of each (`features`, aligned
    with `ids`; `revisions` where the caller knows them: new signatures to store)."""

    ids: list[str]
    features: Features
    revisions: list[int] | None = None


class DedupStore(StageRunStore):
    """Signatures and clusters; a run's flags go through `StageRunStore`."""

    db: Database

    # ------------------------------------------------------------ inputs

    def dedup_inventory(self) -> Inventory:
        """Current conversations in import order: id, revision, status, age rank, pin time."""
        with self.db.connect() as con:
            t = con.sql(
                "SELECT c.id, c.revision, c.status, epoch_us(k.ts) AS pinned FROM conversations c "
                "LEFT JOIN (SELECT conversation_id, max(ts) AS ts FROM dedup_keepers GROUP BY 1) k "
                "ON k.conversation_id = c.id ORDER BY c.created_at, c.rowid"
            ).to_arrow_table()
        return Inventory(
            ids=t.column("id").to_pylist(),
            revisions=t.column("revision").to_pylist(),
            statuses=t.column("status").to_pylist(),
            pinned=t.column("pinned").to_pylist(),
        )

    def dedup_signatures(self, params_key: str, num_perm: int, ids: list[str] | None = None) -> SignatureRows:
        """Stored signatures of current revisions for these parameters (of `ids` only, if given)."""
        with self.db.connect() as con:
            sql = (
                "SELECT s.conversation_id, s.signature, s.norm_hash, s.n_shingles, s.answer_chars "
                "FROM dedup_signatures s JOIN conversations c ON c.id = s.conversation_id "
                "AND c.revision = s.revision WHERE s.params_key = ?"
            )
            if ids is not None:
                con.register("_want", pa.table({"id": ids}))
                sql += " AND s.conversation_id IN (SELECT id FROM _want)"
            t = con.sql(sql, params=[params_key]).to_arrow_table()
        blobs = t.column("signature").to_pylist()
        sig = (
            np.frombuffer(b"".join(blobs), dtype="<u4").reshape(len(blobs), num_perm).astype(np.uint32)
            if blobs
            else np.empty((0, num_perm), np.uint32)
        )
        return SignatureRows(
            ids=t.column("conversation_id").to_pylist(),
            features=Features(
                sig,
                t.column("norm_hash").to_numpy().astype(np.uint64),
                t.column("n_shingles").to_numpy().astype(np.int32),
                t.column("answer_chars").to_numpy().astype(np.int64),
            ),
        )

    # ------------------------------------------------------------ results

    def dedup_save(
        self,
        run_id: str,
        *,
        params_key: str,
        new_signatures: SignatureRows | None,
        members: list[dict[str, Any]],
        pairs: list[dict[str, Any]],
        result: StageResult,
        replace_run: bool = False,
        run: dict[str, Any] | None = None,
    ) -> None:
        """A run's results in one transaction: new signatures, members, pairs, then the stage's
        run, flags and stats (`record_stage`). `run` (actor, started_at) records a new run, so a
        crash before the results land leaves no half-run behind. `replace_run` rewrites the
        members of an existing run (re-clustering after an SME choice)."""
        at = now()
        with self.db.transaction() as con:
            if new_signatures and new_signatures.ids:
                s, f = new_signatures, new_signatures.features
                con.register(
                    "_sig",
                    pa.table(
                        {
                            "conversation_id": s.ids,
                            "revision": pa.array(s.revisions, pa.int32()),
                            "signature": pa.array(signature_bytes(f.signatures), pa.binary()),
                            "norm_hash": pa.array(f.norm_hashes.tolist(), pa.uint64()),
                            "n_shingles": pa.array(f.n_shingles.tolist(), pa.int32()),
                            "answer_chars": pa.array(f.answer_chars.tolist(), pa.int64()),
                        }
                    ),
                )
                con.execute(
                    "DELETE FROM dedup_signatures WHERE params_key = ? AND (conversation_id, revision) IN "
                    "(SELECT (conversation_id, revision) FROM _sig)",
                    [params_key],
                )
                con.execute(
                    "INSERT INTO dedup_signatures SELECT conversation_id, revision, ?, signature, norm_hash, "
                    "n_shingles, answer_chars, ? FROM _sig",
                    [params_key, at],
                )
                con.unregister("_sig")
            if replace_run:
                con.execute("DELETE FROM dedup_members WHERE run_id = ?", [run_id])
            if members:
                con.register("_m", pa.Table.from_pylist(members))
                con.execute(
                    "INSERT INTO dedup_members SELECT ?, conversation_id, revision, cluster_id, cluster_size, "
                    "is_keeper, keeper_reason, jaccard, exact FROM _m",
                    [run_id],
                )
                con.unregister("_m")
            if pairs and not replace_run:
                con.register("_p", pa.Table.from_pylist(pairs))
                con.execute(
                    "INSERT INTO dedup_pairs SELECT ?, a, b, jaccard, exact, merged, borderline FROM _p",
                    [run_id],
                )
                con.unregister("_p")
            self.record_stage(
                run_id,
                result,
                actor=run["actor"] if run else None,
                started_at=run.get("started_at") if run else None,
                new_run=run is not None,
                con=con,
            )

    def dedup_latest_run(self) -> dict[str, Any] | None:
        """The last finished dedup run: id, config, stats, actor, times."""
        with self.db.connect() as con:
            row = first(
                con.execute(
                    "SELECT id, config, stats, actor, started_at, finished_at FROM stage_runs "
                    "WHERE stage = 'dedup' AND finished_at IS NOT NULL ORDER BY finished_at DESC, started_at DESC "
                    "LIMIT 1"
                )
            )
        if row is None:
            return None
        return {
            "id": row[0],
            "config": json.loads(row[1]),
            "stats": json.loads(row[2]) if row[2] else {},
            "actor": row[3],
            "started_at": row[4].isoformat(),
            "finished_at": row[5].isoformat(),
        }

    def _latest_run_id(self, con: duckdb.DuckDBPyConnection) -> str | None:
        row = first(
            con.execute(
                "SELECT id FROM stage_runs WHERE stage = 'dedup' AND finished_at IS NOT NULL "
                "ORDER BY finished_at DESC, started_at DESC LIMIT 1"
            )
        )
        return row[0] if row else None

    def dedup_clusters(self) -> dict[str, str]:
        """conversation id → cluster id for every current conversation, from the latest dedup run.

        A cluster id is the smallest conversation id among its members; a conversation in no
        cluster (or not seen by the run) is its own cluster. The freeze step keeps a cluster on one
        side of the split."""
        with self.db.connect() as con:
            run_id = self._latest_run_id(con)
            rows = con.execute(
                "SELECT c.id, coalesce(m.cluster_id, c.id) FROM conversations c "
                "LEFT JOIN dedup_members m ON m.conversation_id = c.id AND m.run_id = ?",
                [run_id],
            ).fetchall()
        return dict(rows)

    def dedup_cluster_list(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """Clusters of the latest run, largest first, with members and a preview of each."""
        with self.db.connect() as con:
            run_id = self._latest_run_id(con)
            if run_id is None:
                return {"run_id": None, "total": 0, "clusters": [], "sizes": {}}
            total = con.execute(
                "SELECT count(DISTINCT cluster_id) FROM dedup_members WHERE run_id = ?", [run_id]
            ).fetchall()[0][0]
            sizes = dict(
                con.execute(
                    "SELECT cluster_size, count(*) FROM (SELECT DISTINCT cluster_id, cluster_size FROM dedup_members "
                    "WHERE run_id = ?) GROUP BY 1 ORDER BY 1",
                    [run_id],
                ).fetchall()
            )
            rows = con.execute(
                "WITH page AS (SELECT DISTINCT cluster_id, cluster_size FROM dedup_members WHERE run_id = ? "
                "ORDER BY cluster_size DESC, cluster_id LIMIT ? OFFSET ?) "
                "SELECT m.cluster_id, m.cluster_size, m.conversation_id, m.revision, m.is_keeper, m.keeper_reason, "
                "m.jaccard, m.exact, c.status, r.content FROM dedup_members m "
                "JOIN page USING (cluster_id) JOIN conversations c ON c.id = m.conversation_id "
                "LEFT JOIN revisions r ON r.conversation_id = m.conversation_id AND r.revision = m.revision "
                "WHERE m.run_id = ? ORDER BY m.cluster_size DESC, m.cluster_id, NOT m.is_keeper, m.conversation_id",
                [run_id, limit, offset, run_id],
            ).fetchall()
        clusters: dict[str, dict[str, Any]] = {}
        for r in rows:
            c = clusters.setdefault(r[0], {"id": r[0], "size": r[1], "keeper": None, "reason": None, "members": []})
            if r[4]:
                c["keeper"], c["reason"] = r[2], r[5]
            c["members"].append(
                {
                    "id": r[2],
                    "revision": r[3],
                    "keeper": r[4],
                    "jaccard": r[6],
                    "exact": r[7],
                    "status": r[8],
                    "preview": _preview(r[9]),
                }
            )
        return {"run_id": run_id, "total": total, "clusters": list(clusters.values()), "sizes": sizes}

    def dedup_cluster_of(self, conversation_id: str) -> str | None:
        with self.db.connect() as con:
            run_id = self._latest_run_id(con)
            row = first(
                con.execute(
                    "SELECT cluster_id FROM dedup_members WHERE run_id = ? AND conversation_id = ?",
                    [run_id, conversation_id],
                )
            )
        return row[0] if row else None

    def dedup_pairs(self, *, run_id: str | None = None, borderline: bool = False) -> list[dict[str, Any]]:
        """Pairs of a run (default the latest), with any SME decision on them."""
        with self.db.connect() as con:
            run_id = run_id or self._latest_run_id(con)
            cond = " AND p.borderline" if borderline else ""
            return records(
                con.execute(
                    "SELECT p.a, p.b, p.jaccard, p.exact, p.merged, p.borderline, d.decision, d.actor AS decided_by "
                    "FROM dedup_pairs p LEFT JOIN (SELECT a, b, arg_max(decision, ts) AS decision, "
                    "arg_max(actor, ts) AS actor FROM dedup_decisions GROUP BY a, b) d ON d.a = p.a AND d.b = p.b "
                    f"WHERE p.run_id = ?{cond} ORDER BY p.jaccard DESC, p.a, p.b",
                    [run_id],
                )
            )

    def dedup_decisions(self) -> dict[tuple[str, str], str]:
        with self.db.connect() as con:
            rows = con.execute("SELECT a, b, arg_max(decision, ts) FROM dedup_decisions GROUP BY a, b").fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    # ------------------------------------------------------------ SME choices

    def dedup_pin_keeper(self, conversation_id: str, *, actor: str) -> None:
        at = now()
        with self.db.transaction() as con:
            if not first(con.execute("SELECT 1 FROM conversations WHERE id = ?", [conversation_id])):
                raise NotFound(f"no conversation {conversation_id!r}")
            con.execute("INSERT INTO dedup_keepers VALUES (?, ?, ?)", [conversation_id, actor, at])
            con.execute(
                "INSERT INTO events VALUES (nextval('event_ids'), ?, 'dedup_keep', ?, ?, ?)",
                [conversation_id, dumps({"keeper": True}), actor, at],
            )

    def dedup_decide(self, a: str, b: str, decision: str, *, actor: str) -> None:
        if decision not in DECISIONS:
            raise StoreError(f"unknown decision {decision!r} (use {', '.join(DECISIONS)})")
        if a == b:
            raise StoreError("a pair needs two different conversations")
        a, b = min(a, b), max(a, b)
        at = now()
        with self.db.transaction() as con:
            for cid in (a, b):
                if not first(con.execute("SELECT 1 FROM conversations WHERE id = ?", [cid])):
                    raise NotFound(f"no conversation {cid!r}")
            con.execute("INSERT INTO dedup_decisions VALUES (?, ?, ?, ?, ?)", [a, b, decision, actor, at])
            for cid, other in ((a, b), (b, a)):
                con.execute(
                    "INSERT INTO events VALUES (nextval('event_ids'), ?, 'dedup_pair', ?, ?, ?)",
                    [cid, dumps({"other": other, "decision": decision}), actor, at],
                )

    def dedup_decide_many(self, pairs: list[tuple[str, str]], decision: str, *, actor: str) -> int:
        """One decision on many pairs, all in one transaction (each pair gets its events)."""
        if decision not in DECISIONS:
            raise StoreError(f"unknown decision {decision!r} (use {', '.join(DECISIONS)})")
        at = now()
        rows = sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b})
        with self.db.transaction() as con:
            for a, b in rows:
                con.execute("INSERT INTO dedup_decisions VALUES (?, ?, ?, ?, ?)", [a, b, decision, actor, at])
                for cid, other in ((a, b), (b, a)):
                    con.execute(
                        "INSERT INTO events VALUES (nextval('event_ids'), ?, 'dedup_pair', ?, ?, ?)",
                        [cid, dumps({"other": other, "decision": decision, "bulk": True}), actor, at],
                    )
        return len(rows)

    # ------------------------------------------------------------ scale path

    def dedup_bucket_pairs_sql(self, band_hashes: np.ndarray) -> np.ndarray:
        """Candidate pairs as a DuckDB group-by on (band, band hash): the same step
        `curation.dedup.candidate_pairs` does in numpy (all pairs per bucket, no cap), written as the
        SQL a Spark or Ray cluster would run. Returns sorted unique (i < j) index pairs."""
        n, bands = band_hashes.shape
        con = duckdb.connect()
        try:
            con.register(
                "_bands",
                pa.table(
                    {
                        "doc": pa.array(np.repeat(np.arange(n, dtype=np.int64), bands)),
                        "band": pa.array(np.tile(np.arange(bands, dtype=np.int32), n)),
                        "h": pa.array(band_hashes.reshape(-1)),
                    }
                ),
            )
            rows = con.execute(
                "WITH buckets AS (SELECT band, h, list(doc ORDER BY doc) AS docs FROM _bands GROUP BY band, h "
                "HAVING count(*) > 1), members AS (SELECT band, h, unnest(docs) AS doc FROM buckets) "
                "SELECT DISTINCT x.doc, y.doc FROM members x JOIN members y "
                "ON x.band = y.band AND x.h = y.h AND x.doc < y.doc ORDER BY 1, 2"
            ).fetchall()
        finally:
            con.close()
        return np.array(rows, dtype=np.int64).reshape(-1, 2)
