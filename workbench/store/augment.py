"""Augment results: the LLM response cache, which conversation is a paraphrase of which, rejects.

- `llm_cache` holds one row per (model, request) key: the texts and token counts the endpoint
  answered. No API key is ever part of a request, a key or a row; the endpoint is kept as
  `host:port` only.
- `augment_children` links each generated conversation to its parent revision and the calls it
  came from; a re-run that produces the same child finds it here and adds nothing.
- `augment_rejects` keeps every variation that was not kept, with its reason, keyed by
  (parent, revision, variation, calls): a re-run replaces the row instead of adding one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from curation.records import content_id
from workbench.store._db import Database, Migration, NotFound, dumps, first, loads, now, records

MIGRATIONS = [
    Migration(
        "augment",
        1,
        """
        CREATE TABLE llm_cache (
            key TEXT PRIMARY KEY, model TEXT NOT NULL, endpoint TEXT NOT NULL, request TEXT NOT NULL,
            response TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            ts TIMESTAMP NOT NULL);
        CREATE TABLE augment_children (
            child_id TEXT PRIMARY KEY, parent_id TEXT NOT NULL, parent_revision INTEGER NOT NULL,
            variation INTEGER NOT NULL, cache_keys TEXT[] NOT NULL, prompt_id TEXT NOT NULL,
            prompt_sha256 TEXT NOT NULL, model TEXT NOT NULL, run_id TEXT NOT NULL, ts TIMESTAMP NOT NULL);
        CREATE INDEX augment_children_parent ON augment_children (parent_id);
        CREATE TABLE augment_rejects (
            parent_id TEXT NOT NULL, parent_revision INTEGER NOT NULL, variation INTEGER NOT NULL,
            calls_key TEXT NOT NULL, reason TEXT NOT NULL, text TEXT, details TEXT, run_id TEXT NOT NULL,
            ts TIMESTAMP NOT NULL, PRIMARY KEY (parent_id, parent_revision, variation, calls_key));
        """,
    ),
]


class AugmentStore:
    db: Database
    add_conversation: Callable[..., tuple[str, bool]]  # CoreStore's, used inside our transaction

    # ------------------------------------------------------------ parents

    def augment_parents(
        self, *, statuses: tuple[str, ...], limit: int | None = None, ids: list[str] | None = None
    ) -> list[tuple[str, int, str, str]]:
        """(id, revision, family_id, content) of conversations to paraphrase, in import order:
        of the given statuses, with a user turn, and not themselves generated (paraphrases are never
        re-paraphrased)."""
        where = [
            "c.status IN (SELECT unnest(?))",
            "r.kind NOT IN ('paraphrase', 'generated')",
            "list_contains(json_extract_string(cur.content, '$.messages[*].role'), 'user')",
        ]
        args: list[Any] = [list(statuses)]
        if ids is not None:
            where.append("c.id IN (SELECT unnest(?))")
            args.append(ids)
        sql = (
            "SELECT c.id, c.revision, c.family_id, cur.content FROM conversations c "
            "JOIN revisions r ON r.conversation_id = c.id AND r.revision = 1 "
            "JOIN revisions cur ON cur.conversation_id = c.id AND cur.revision = c.revision "
            f"WHERE {' AND '.join(where)} AND c.id NOT IN (SELECT child_id FROM augment_children) "
            "ORDER BY c.created_at, c.id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self.db.connect() as con:
            return [(r[0], int(r[1]), r[2], r[3]) for r in con.execute(sql, args).fetchall()]

    # ------------------------------------------------------------ cache

    def llm_cache_get(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        with self.db.connect() as con:
            rows = con.execute(
                "SELECT key, response FROM llm_cache WHERE key IN (SELECT unnest(?))", [sorted(set(keys))]
            ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def _cache_put(self, con: Any, entries: list[dict[str, Any]]) -> None:
        at = now()
        for e in entries:
            con.execute(
                "INSERT INTO llm_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                [
                    e["key"], e["model"], e["endpoint"], dumps(e["request"]), dumps(e["response"]),
                    int(e["response"].get("prompt_tokens") or 0), int(e["response"].get("completion_tokens") or 0), at,
                ],
            )  # fmt: skip

    def llm_cache_put(self, entries: list[dict[str, Any]]) -> None:
        """Entries: key, model, endpoint (host:port), request, response (a Completion dict)."""
        if entries:
            with self.db.transaction() as con:
                self._cache_put(con, entries)

    def llm_cache_stats(self) -> dict[str, int]:
        with self.db.connect() as con:
            n, p, c = con.execute(
                "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) FROM llm_cache"
            ).fetchall()[0]
        return {"entries": int(n), "prompt_tokens": int(p), "completion_tokens": int(c)}

    # ------------------------------------------------------------ results

    def augment_save(self, run_id: str, parents: list[dict[str, Any]], *, actor: str) -> list[list[str]]:
        """The outcome of several parents in one transaction. Each parent: parent_id,
        parent_revision, family_id, children [(conversation, provenance, variation, cache keys)],
        rejects [{variation, calls_key, reason, text, details}] and cache_entries (new answers).

        A child lands as a pending conversation in the parent's family. Returns, per parent and
        child, 'created', 'present' (made from this parent before: nothing added) or 'duplicate'
        (equal to another conversation: recorded as a reject instead)."""
        with self.db.transaction() as con:
            return [self._save_parent(con, run_id, p, actor) for p in parents]

    def _save_parent(self, con: Any, run_id: str, p: dict[str, Any], actor: str) -> list[str]:
        at = now()
        parent_id = p["parent_id"]
        rejects = list(p["rejects"])
        outcome: list[str] = []
        seen: set[str] = set()
        self._cache_put(con, p["cache_entries"])
        for conv, prov, variation, keys in p["children"]:
            cid = content_id(conv.content_json())
            mine = first(con.execute("SELECT parent_id FROM augment_children WHERE child_id = ?", [cid]))
            if cid not in seen and mine is not None and mine[0] == parent_id:
                outcome.append("present")
                seen.add(cid)
                continue
            exists = first(con.execute("SELECT 1 FROM conversations WHERE id = ?", [cid]))
            if exists is not None or cid in seen:
                outcome.append("duplicate")
                rejects.append(
                    {
                        "variation": variation,
                        "calls_key": "|".join(keys),
                        "reason": "duplicate",
                        "text": None,
                        "details": {"of": cid},
                    }
                )
                continue
            seen.add(cid)
            self.add_conversation(conv, prov, actor=actor, family_id=p["family_id"], con=con)
            con.execute(
                "INSERT INTO augment_children VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    cid, parent_id, p["parent_revision"], variation, list(keys), prov.prompt_id,
                    prov.prompt_sha256, prov.model, run_id, at,
                ],
            )  # fmt: skip
            outcome.append("created")
        if rejects:
            con.register(
                "_rej",
                pa.table(
                    {
                        "variation": pa.array([r["variation"] for r in rejects], pa.int32()),
                        "calls_key": [r["calls_key"] for r in rejects],
                        "reason": [r["reason"] for r in rejects],
                        "text": [r.get("text") for r in rejects],
                        "details": [dumps(r.get("details") or {}) for r in rejects],
                    }
                ),
            )
            con.execute(
                "INSERT OR REPLACE INTO augment_rejects SELECT ?, ?, variation, calls_key, reason, text, "
                "details, ?, ? FROM _rej",
                [parent_id, p["parent_revision"], run_id, at],
            )
            con.unregister("_rej")
        return outcome

    # ------------------------------------------------------------ review

    def augment_families(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> dict[str, Any]:
        """Parents that have paraphrases (newest first), each with its children and their status."""
        where, args = "", []
        if status:
            where, args = "WHERE c.status = ?", [status]
        with self.db.connect() as con:
            total = con.execute(
                f"SELECT count(DISTINCT a.parent_id) FROM augment_children a JOIN conversations c ON c.id = a.child_id {where}",
                args,
            ).fetchall()[0][0]
            parents = [
                r[0]
                for r in con.execute(
                    "SELECT a.parent_id FROM augment_children a JOIN conversations c ON c.id = a.child_id "
                    f"{where} GROUP BY 1 ORDER BY max(a.ts) DESC, 1 LIMIT ? OFFSET ?",
                    [*args, limit, offset],
                ).fetchall()
            ]
        return {"total": int(total), "parents": [self.augment_family(p) for p in parents]}

    def augment_run_rejects(self, run_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
        with self.db.connect() as con:
            return records(
                con.execute(
                    "SELECT parent_id, variation, reason, text, details FROM augment_rejects WHERE run_id = ? "
                    "ORDER BY parent_id, variation LIMIT ?",
                    [run_id, limit],
                ),
                details=loads,
            )

    def augment_family(self, parent_id: str) -> dict[str, Any]:
        """A parent, its paraphrases (current text, status, provenance) and its rejected variations."""
        with self.db.connect() as con:
            row = first(con.execute("SELECT id, status, revision FROM conversations WHERE id = ?", [parent_id]))
            if row is None:
                raise NotFound(f"no conversation {parent_id!r}")
            children = []
            for cid, status, rev, variation, content, prov, pr in con.execute(
                "SELECT c.id, c.status, c.revision, a.variation, r.content, r1.provenance, a.parent_revision "
                "FROM augment_children a JOIN conversations c ON c.id = a.child_id "
                "JOIN revisions r ON r.conversation_id = c.id AND r.revision = c.revision "
                "JOIN revisions r1 ON r1.conversation_id = c.id AND r1.revision = 1 "
                "WHERE a.parent_id = ? ORDER BY a.parent_revision, a.variation, c.id",
                [parent_id],
            ).fetchall():
                children.append(
                    {
                        "id": cid, "status": status, "revision": rev, "variation": variation,
                        "parent_revision": pr, "messages": json.loads(content)["messages"],
                        "provenance": json.loads(prov) if prov else None,
                    }
                )  # fmt: skip
            rejects = records(
                con.execute(
                    "SELECT parent_revision, variation, reason, text, details, run_id FROM augment_rejects "
                    "WHERE parent_id = ? ORDER BY parent_revision, variation, ts",
                    [parent_id],
                ),
                details=loads,
            )
        return {"id": row[0], "status": row[1], "revision": row[2], "children": children, "rejects": rejects}
