"""Dedup use cases: run the stage over the store, list clusters and borderline pairs, let an SME
pick the keeper or decide a pair, and compare two conversations word by word."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation import dedup as dd
from curation.progress import StepProgress
from workbench.services.core import default_actor
from workbench.services.results import Result, optional
from workbench.store import Store, StoreError
from workbench.store._db import now
from workbench.store.dedup import SignatureRows
from workbench.store.stage_runs import new_stage_run_id


@dataclass(frozen=True)
class DedupSummary(Result):
    """`sift dedup --json`. `params`: threshold, num_perm, bands, rows, ngram, view (and the rest of
    `DedupConfig.params()`)."""

    conversations: int
    clusters: int
    duplicates_flagged: int
    exact_groups: int
    borderline_pairs: int
    params: dict[str, Any]


@dataclass(frozen=True)
class DedupStatus(Result):
    """The latest run (`{"id", "config", "stats", "actor", "started_at", "finished_at"}`, None
    before the first) and how many conversations it has not seen at their current revision."""

    run: dict[str, Any] | None
    stale: int | None
    params: dict[str, Any] | None = optional()


@dataclass(frozen=True)
class ClusterIndex(Result):
    """conversation id → cluster id (its own id when alone); `to_dict()` is that mapping."""

    cluster_of: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.cluster_of)


@dataclass(frozen=True)
class ClusterPage(Result):
    """Clusters of the latest run, largest first: `{"id", "size", "keeper", "reason", "members":
    [{"id", "revision", "keeper", "jaccard", "exact", "status", "preview"}]}` each; `sizes`:
    cluster size → how many clusters have it. `run_id` None before the first run."""

    run_id: str | None
    total: int
    clusters: list[dict[str, Any]]
    sizes: dict[int, int]


@dataclass(frozen=True)
class ComparedText(Result):
    id: str
    text: str
    runs: list[Any]


@dataclass(frozen=True)
class PairComparison(Result):
    """Two conversations' compared text, word runs marked where they differ."""

    a: ComparedText
    b: ComparedText
    jaccard: float
    view: str


@dataclass(frozen=True)
class KeeperChange(Result):
    id: str
    cluster_id: str | None
    keeper: str
    flagged: list[str]


@dataclass(frozen=True)
class PairDecision(Result):
    a: str
    b: str
    decision: str
    clusters: int
    duplicates_flagged: int


@dataclass(frozen=True)
class RangeDecision(Result):
    """`clusters` and `duplicates_flagged` are absent when no pair was in the range."""

    decided: int
    decision: str
    clusters: int | None = optional()
    duplicates_flagged: int | None = optional()


def _noop(stage: str, done: int, total: int) -> None:
    return None


class DedupService:
    store: Store

    def dedup(
        self,
        *,
        threshold: float | None = None,
        num_perm: int | None = None,
        ngram: int | None = None,
        view: str | None = None,
        config: dd.DedupConfig | None = None,
        actor: str | None = None,
        progress: StepProgress | None = None,
    ) -> DedupSummary:
        """Find exact and near-duplicate clusters over every current conversation, choose keepers,
        flag the rest `near_duplicate`. Signatures already stored for a conversation revision and
        these parameters are reused. Returns the `sift dedup --json` object."""
        overrides = {"threshold": threshold, "num_perm": num_perm, "ngram": ngram, "view": view}
        base = config.to_dict() if config else {}
        config = dd.DedupConfig(**{**base, **{k: v for k, v in overrides.items() if v is not None}})
        progress = progress or _noop
        actor = actor or default_actor()
        started = time.perf_counter()
        run_id = new_stage_run_id("dedup")
        run = {"actor": actor, "started_at": now()}  # the run is recorded with its results

        inv = self.store.dedup_inventory()
        ids, n = inv.ids, len(inv.ids)
        key = config.signature_key()
        stored = self.store.dedup_signatures(key, config.num_perm)
        pos = {cid: i for i, cid in enumerate(ids)}
        feats = dd.Features(
            np.full((n, config.num_perm), dd.EMPTY_HASH, np.uint32),
            np.zeros(n, np.uint64),
            np.zeros(n, np.int32),
            np.zeros(n, np.int64),
        )
        have = np.zeros(n, bool)
        if stored.ids:
            at = np.array([pos.get(c, -1) for c in stored.ids], np.int64)
            ok = at >= 0
            at = at[ok]
            feats.signatures[at] = stored.features.signatures[ok]
            feats.norm_hashes[at] = stored.features.norm_hashes[ok]
            feats.n_shingles[at] = stored.features.n_shingles[ok]
            feats.answer_chars[at] = stored.features.answer_chars[ok]
            have[at] = True
        missing = [ids[i] for i in np.flatnonzero(~have)]
        new: SignatureRows | None = None
        progress("signatures", 0, len(missing))
        if missing:
            # a redacted revision is compared by the text it was redacted from (see
            # `Store.iter_unredacted`): placeholders must not split a family
            rows = [r for batch in self.store.iter_unredacted(missing, batch=config.batch_size) for r in batch]
            f = dd.features_all(
                [r[2] for r in rows], config, progress=lambda done, total: progress("signatures", done, total)
            )
            at = np.array([pos[r[0]] for r in rows], np.int64)
            feats.signatures[at] = f.signatures
            feats.norm_hashes[at] = f.norm_hashes
            feats.n_shingles[at] = f.n_shingles
            feats.answer_chars[at] = f.answer_chars
            new = SignatureRows(ids=[r[0] for r in rows], features=f, revisions=[r[1] for r in rows])
        progress("clusters", 0, 1)
        items = [
            dd.Item(cid, rev, st, age=i, pinned=pin)
            for i, (cid, rev, st, pin) in enumerate(zip(ids, inv.revisions, inv.statuses, inv.pinned, strict=True))
        ]
        result = dd.find_duplicates(items, feats, config, decisions=self.store.dedup_decisions())
        summary = result.summary(config)
        stats = {
            **summary,
            "signatures_computed": len(new.ids) if new else 0,
            "signatures_reused": n - (len(new.ids) if new else 0),
            "compared": result.compared,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.store.dedup_save(
            run_id,
            params_key=key,
            new_signatures=new,
            members=_member_rows(result.clusters),
            pairs=[_pair_row(p) for p in result.pairs],
            result=result.stage_result(config, stats),
            run=run,
        )
        progress("clusters", 1, 1)
        return DedupSummary(**summary)

    # ------------------------------------------------------------ reading results

    def dedup_status(self) -> DedupStatus:
        """The latest run (config, stats) and how many conversations it has not seen at their
        current revision (imported or edited since)."""
        run = self.store.dedup_latest_run()
        if run is None:
            return DedupStatus(run=None, stale=None)
        config = dd.DedupConfig(**run["config"])
        have = len(self.store.dedup_signatures(config.signature_key(), config.num_perm).ids)
        total = self.store.stats()["conversations"]
        return DedupStatus(run=run, stale=total - have, params=config.params())

    def dedup_clusters(self) -> ClusterIndex:
        """conversation id → cluster id (its own id when alone); see `Store.dedup_clusters`."""
        return ClusterIndex(self.store.dedup_clusters())

    def dedup_cluster_list(self, *, limit: int = 50, offset: int = 0) -> ClusterPage:
        return ClusterPage(**self.store.dedup_cluster_list(limit=limit, offset=offset))

    def dedup_pairs(self, *, borderline: bool = True, undecided: bool = False) -> list[dict[str, Any]]:
        pairs = self.store.dedup_pairs(borderline=borderline)
        return [p for p in pairs if not (undecided and p["decision"])]

    def dedup_compare(self, a: str, b: str) -> PairComparison:
        """Two conversations' compared text (the latest run's view), word runs marked where they
        differ, and their estimated Jaccard."""
        run = self.store.dedup_latest_run()
        config = dd.DedupConfig(**run["config"]) if run else dd.DedupConfig()
        convs = [self.store.conversation(x) for x in (a, b)]
        texts = [dd.text_view(c, config.view, config.include_system) for c in convs]
        runs_a, runs_b = dd.word_diff(texts[0], texts[1])
        sig = dd.MinHasher(config.num_perm, config.seed, config.ngram).signatures([dd.normalise(t) for t in texts])
        return PairComparison(
            a=ComparedText(a, texts[0], runs_a),
            b=ComparedText(b, texts[1], runs_b),
            jaccard=round(float((sig[0] == sig[1]).mean()), 4),
            view=config.view,
        )

    # ------------------------------------------------------------ SME choices

    def keep(self, conversation_id: str, *, actor: str | None = None) -> KeeperChange:
        """Make this conversation the keeper of its cluster (an SME override that outlives runs)."""
        cluster = self.store.dedup_cluster_of(conversation_id)
        if cluster is None:
            self.store.get_conversation(conversation_id)  # NotFound for an unknown id
            raise StoreError(
                f"conversation {conversation_id} is in no duplicate cluster of the latest dedup run "
                "(run `sift dedup` first)"
            )
        actor = actor or default_actor()
        self.store.dedup_pin_keeper(conversation_id, actor=actor)
        self._recluster()
        new_cluster = self.store.dedup_cluster_of(conversation_id)
        listed = self.store.dedup_clusters()
        members = sorted(c for c, k in listed.items() if k == new_cluster)
        return KeeperChange(
            id=conversation_id,
            cluster_id=new_cluster,
            keeper=conversation_id,
            flagged=[m for m in members if m != conversation_id],
        )

    def decide_pair(self, a: str, b: str, decision: str, *, actor: str | None = None) -> PairDecision:
        """Record an SME's call on a pair ('duplicate' or 'distinct') and re-cluster."""
        if self.store.dedup_latest_run() is None:
            raise StoreError("no dedup run yet (run `sift dedup` first)")
        self.store.dedup_decide(a, b, decision, actor=actor or default_actor())
        result = self._recluster()
        return PairDecision(
            a=min(a, b),
            b=max(a, b),
            decision=decision,
            clusters=result["clusters"],
            duplicates_flagged=result["duplicates_flagged"],
        )

    def borderline_in_range(self, low: float, high: float) -> list[dict[str, Any]]:
        """Undecided borderline pairs whose estimated Jaccard lies in [low, high]."""
        return [p for p in self.dedup_pairs(borderline=True, undecided=True) if low <= p["jaccard"] <= high]

    def decide_range(
        self, low: float, high: float, decision: str, *, expected: int, actor: str | None = None
    ) -> RangeDecision:
        """One SME call on every undecided borderline pair in a Jaccard range, then one re-cluster.
        `expected` is the count the SME confirmed: when others decided some pairs meanwhile, the
        count differs and nothing is written."""
        if self.store.dedup_latest_run() is None:
            raise StoreError("no dedup run yet (run `sift dedup` first)")
        pairs = self.borderline_in_range(low, high)
        if len(pairs) != expected:
            raise StoreError(
                f"{len(pairs)} undecided pairs are in {low:.2f}–{high:.2f} now, not the {expected} you confirmed "
                "(someone decided some meanwhile): count again"
            )
        if not pairs:
            return RangeDecision(decided=0, decision=decision)
        n = self.store.dedup_decide_many([(p["a"], p["b"]) for p in pairs], decision, actor=actor or default_actor())
        result = self._recluster()
        return RangeDecision(
            decided=n, decision=decision, clusters=result["clusters"], duplicates_flagged=result["duplicates_flagged"]
        )

    def _recluster(self) -> dict[str, Any]:
        """Clusters, keepers and flags again from the latest run's stored pairs, with the SME's
        pins and decisions; no signatures are recomputed."""
        run = self.store.dedup_latest_run()
        if run is None:
            raise StoreError("no dedup run yet (run `sift dedup` first)")
        config = dd.DedupConfig(**run["config"])
        pairs = self.store.dedup_pairs(run_id=run["id"])
        decisions = self.store.dedup_decisions()
        involved = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs} | {x for k in decisions for x in k})
        inv = self.store.dedup_inventory()
        age = {cid: i for i, cid in enumerate(inv.ids)}
        info = {
            cid: (rev, st, pin)
            for cid, rev, st, pin in zip(inv.ids, inv.revisions, inv.statuses, inv.pinned, strict=True)
        }
        sigs = self.store.dedup_signatures(config.signature_key(), config.num_perm, ids=involved)
        ids = [c for c in sigs.ids if c in info]
        order = sorted(range(len(ids)), key=lambda i: age[ids[i]])
        ids = [ids[i] for i in order]
        feats = dd.Features(
            sigs.features.signatures[order],
            sigs.features.norm_hashes[order],
            sigs.features.n_shingles[order],
            sigs.features.answer_chars[order],
        )
        items = [dd.Item(c, info[c][0], info[c][1], age=age[c], pinned=info[c][2]) for c in ids]
        index = {c: i for i, c in enumerate(ids)}
        kept = [p for p in pairs if p["a"] in index and p["b"] in index]
        idx = np.array([(index[p["a"]], index[p["b"]]) for p in kept], np.int64).reshape(-1, 2)
        est = np.array([p["jaccard"] for p in kept], np.float64)
        result = dd.find_duplicates(items, feats, config, decisions=decisions, pairs=(idx, est))
        summary = result.summary(config)
        summary["conversations"] = run["stats"].get("conversations", summary["conversations"])
        stats = {**run["stats"], **summary, "reclustered": True}
        self.store.dedup_save(
            run["id"],
            params_key=config.signature_key(),
            new_signatures=None,
            members=_member_rows(result.clusters),
            pairs=[],
            result=result.stage_result(config, stats),
            replace_run=True,
        )
        return summary

    # ------------------------------------------------------------ contamination

    def contamination(
        self, train_ids: list[str], eval_ids: list[str], config: dd.DedupConfig | None = None
    ) -> list[dd.ContaminationPair]:
        """`curation.dedup.contamination` over conversations of the store (current revisions),
        with the latest dedup run's config unless one is given."""
        if config is None:
            run = self.store.dedup_latest_run()
            config = dd.DedupConfig(**run["config"]) if run else dd.DedupConfig()
        load = lambda ids: {c: self.store.conversation(c) for c in ids}  # noqa: E731
        return dd.contamination(load(train_ids), load(eval_ids), config)


def _member_rows(clusters: list[dd.Cluster]) -> list[dict[str, Any]]:
    return [
        {
            "conversation_id": m.id,
            "revision": m.revision,
            "cluster_id": c.id,
            "cluster_size": c.size,
            "is_keeper": m.keeper,
            "keeper_reason": c.reason,
            "jaccard": m.jaccard,
            "exact": m.exact,
        }
        for c in clusters
        for m in c.members
    ]


def _pair_row(p: dd.Pair) -> dict[str, Any]:
    return {"a": p.a, "b": p.b, "jaccard": p.jaccard, "exact": p.exact, "merged": p.merged, "borderline": p.borderline}


__all__ = [
    "ClusterIndex",
    "ClusterPage",
    "ComparedText",
    "DedupService",
    "DedupStatus",
    "DedupSummary",
    "KeeperChange",
    "PairComparison",
    "PairDecision",
    "RangeDecision",
]
