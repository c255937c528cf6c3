"""Clusters and their keepers: the result types, the keeper choice, `find_duplicates` and `dedup`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.dedup.config import REASON, SEVERITY, STAGE, DedupConfig, DedupError
from curation.dedup.lsh import band_hashes, candidate_pairs, exact_pairs, union_find, verify_pairs
from curation.dedup.minhash import Features, features_all
from curation.records import Conversation
from curation.stage import StageFlag, StageResult

# ---------------------------------------------------------------- keepers and results


@dataclass(frozen=True, slots=True)
class Item:
    """A conversation as dedup's keeper choice sees it. `age` orders by import (smaller = older);
    `pinned` is when an SME chose it as keeper (None if never)."""

    id: str
    revision: int = 1
    status: str = "pending"
    age: int = 0
    pinned: float | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    jaccard: float
    exact: bool
    merged: bool  # counted as a duplicate (linked in a cluster)
    borderline: bool  # near the threshold: listed for review
    decision: str | None = None  # an SME's 'duplicate' / 'distinct', when given


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    revision: int
    keeper: bool
    jaccard: float  # estimated Jaccard with the keeper (1.0 for the keeper)
    exact: bool  # an exact copy (after normalisation) of the keeper


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str  # the smallest conversation id among the members
    keeper: str
    reason: str  # why the keeper was chosen
    members: tuple[Member, ...]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class DedupResult:
    clusters: list[Cluster]
    pairs: list[Pair]
    exact_groups: int
    conversations: int
    compared: int  # conversations with something to compare (a non-empty view)

    @property
    def borderline(self) -> list[Pair]:
        return [p for p in self.pairs if p.borderline]

    def cluster_of(self) -> dict[str, str]:
        """conversation id → cluster id, for members of clusters of two or more."""
        return {m.id: c.id for c in self.clusters for m in c.members}

    def flags(self) -> list[dict[str, Any]]:
        """A `near_duplicate` flag (stage dedup, severity error) for every non-keeper."""
        return cluster_flags(self.clusters)

    def stage_result(self, config: DedupConfig, stats: dict[str, Any]) -> StageResult:
        """The dedup stage's result (`curation.stage`): a `near_duplicate` flag on every non-keeper
        (replacing every earlier dedup flag) and `stats` (the summary and how the run went)."""
        return StageResult(STAGE, config.to_dict(), [StageFlag(**f) for f in self.flags()], stats)

    def summary(self, config: DedupConfig) -> dict[str, Any]:
        """The `sift dedup --json` object."""
        return {
            "conversations": self.conversations,
            "clusters": len(self.clusters),
            "duplicates_flagged": sum(c.size - 1 for c in self.clusters),
            "exact_groups": self.exact_groups,
            "borderline_pairs": len(self.borderline),
            "params": config.params(),
        }


def cluster_flags(clusters: Iterable[Cluster]) -> list[dict[str, Any]]:
    out = []
    for c in clusters:
        for m in c.members:
            if m.keeper:
                continue
            what = "exact duplicate (after normalisation)" if m.exact else f"near-duplicate (Jaccard ≈ {m.jaccard:.2f})"
            out.append(
                {
                    "conversation_id": m.id,
                    "revision": m.revision,
                    "reason": REASON,
                    "severity": SEVERITY,
                    "message": f"{what} of {c.keeper}, kept for {c.reason}; cluster {c.id} of {c.size}",
                    "details": {
                        "cluster_id": c.id,
                        "keeper": c.keeper,
                        "jaccard": round(m.jaccard, 4),
                        "exact": m.exact,
                        "cluster_size": c.size,
                    },
                }
            )
    return out


_STATUS_RANK = {"accepted": 0, "pending": 1, "rejected": 2}

_REASONS = {
    "accepted": "its review status",
    "longest_answer": "the longest answer",
    "oldest": "being the oldest",
    "newest": "being the newest",
}


def _criterion_value(criterion: str, item: Item, chars: int) -> float:
    if criterion == "accepted":
        return _STATUS_RANK.get(item.status, 1)
    if criterion == "longest_answer":
        return -chars
    if criterion == "oldest":
        return item.age
    return -item.age  # newest


def choose_keeper(
    members: Sequence[int], items: Sequence[Item], chars: np.ndarray, policy: Sequence[str]
) -> tuple[int, str]:
    """The member to keep and why: the most recently SME-pinned member if any, else the policy's
    criteria in order, then the smallest id."""

    def key(i: int) -> tuple[Any, ...]:
        return (*(_criterion_value(c, items[i], int(chars[i])) for c in policy), items[i].id)

    pins = [p for p in (items[i].pinned for i in members) if p is not None]
    if pins:
        latest = max(pins)
        return min((i for i in members if items[i].pinned == latest), key=key), "SME choice"

    ranked = sorted(members, key=key)
    best, second = ranked[0], ranked[1]
    for c in policy:
        if _criterion_value(c, items[best], int(chars[best])) != _criterion_value(c, items[second], int(chars[second])):
            return best, _REASONS[c]
    return best, "the smallest id (all else equal)"


def find_duplicates(
    items: Sequence[Item],
    feats: Features,
    config: DedupConfig,
    *,
    decisions: Mapping[tuple[str, str], str] | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> DedupResult:
    """Bands → candidate pairs → verified pairs → clusters → keepers, over precomputed features.

    `decisions` maps an (id, id) pair (smaller id first) to an SME's 'duplicate' or 'distinct',
    which overrides the estimate. `pairs` (index pairs, estimated Jaccard) skips the LSH steps,
    e.g. to re-cluster after a decision from the pairs a run stored.
    """
    n = len(items)
    if len(feats) != n:
        raise DedupError(f"{n} items but {len(feats)} feature rows")
    decisions = decisions or {}
    live = feats.n_shingles > 0
    t, margin = config.threshold, config.borderline_margin
    ex_pairs, exact_groups = exact_pairs(feats.norm_hashes, live)
    if pairs is None:
        idx = np.flatnonzero(live)
        b, r = config.bands_rows
        cand = candidate_pairs(band_hashes(feats.signatures[idx], b, r), config.max_bucket)
        cand = idx[cand] if len(cand) else cand
        est = verify_pairs(feats.signatures, cand)
        keep = est >= t - margin
        cand, est = cand[keep], est[keep]
    else:
        cand, est = pairs
    # exact copies are pairs too (whatever their estimate)
    all_pairs = np.sort(np.concatenate([cand.reshape(-1, 2).astype(np.int64), ex_pairs]), axis=1)
    all_est = np.concatenate([est, np.ones(len(ex_pairs))])
    if len(all_pairs):
        _, first = np.unique(all_pairs[:, 0] * n + all_pairs[:, 1], return_index=True)
        all_pairs, all_est = all_pairs[first], all_est[first]
    is_exact = feats.norm_hashes[all_pairs[:, 0]] == feats.norm_hashes[all_pairs[:, 1]]
    merged = is_exact | (all_est >= t)
    near = ~is_exact & (np.abs(all_est - t) < margin)
    decided = np.full(len(all_pairs), None, object)
    if decisions:
        index = {it.id: i for i, it in enumerate(items)}
        code = all_pairs[:, 0] * n + all_pairs[:, 1]
        extra: list[tuple[int, int]] = []
        for (id_a, id_b), d in decisions.items():
            if id_a not in index or id_b not in index:
                continue
            i, j = sorted((index[id_a], index[id_b]))
            at = int(np.searchsorted(code, i * n + j))
            if at < len(code) and code[at] == i * n + j:
                merged[at] = d == "duplicate"
                decided[at] = d
            elif d == "duplicate":  # a decision on a pair the estimate did not surface still counts
                extra.append((i, j))
        if extra:
            ex = np.array(extra, np.int64)
            all_pairs = np.concatenate([all_pairs, ex])
            all_est = np.concatenate([all_est, verify_pairs(feats.signatures, ex)])
            is_exact = np.concatenate([is_exact, np.zeros(len(ex), bool)])
            merged = np.concatenate([merged, np.ones(len(ex), bool)])
            near = np.concatenate([near, np.zeros(len(ex), bool)])
            decided = np.concatenate([decided, np.full(len(ex), "duplicate", object)])
    listed = np.flatnonzero(merged | near)
    ids = [it.id for it in items]
    out_pairs = []
    for k in listed.tolist():
        a, b = ids[all_pairs[k, 0]], ids[all_pairs[k, 1]]
        if b < a:
            a, b = b, a
        out_pairs.append(
            Pair(a, b, round(float(all_est[k]), 4), bool(is_exact[k]), bool(merged[k]), bool(near[k]), decided[k])
        )
    labels = union_find(n, all_pairs[merged])
    clusters = _clusters(items, feats, labels, config.keeper_policy)
    out_pairs.sort(key=lambda p: (p.a, p.b))
    return DedupResult(clusters, out_pairs, exact_groups, n, int(live.sum()))


def _clusters(items: Sequence[Item], feats: Features, labels: np.ndarray, policy: Sequence[str]) -> list[Cluster]:
    """Clusters of two or more with their keepers, chosen for all clusters at once: a lexicographic
    sort on (cluster, pinned, policy criteria…, id) puts each keeper first. Same answer as
    `choose_keeper` per cluster."""
    counts = np.bincount(labels, minlength=len(labels))
    idx = np.flatnonzero(counts[labels] >= 2)
    if len(idx) == 0:
        return []
    chosen = [items[i] for i in idx.tolist()]
    ids = np.array([it.id for it in chosen])
    pinned = np.array([-it.pinned if it.pinned is not None else np.inf for it in chosen])
    crit = {
        "accepted": np.array([_STATUS_RANK.get(it.status, 1) for it in chosen], np.float64),
        "longest_answer": -feats.answer_chars[idx].astype(np.float64),
        "oldest": np.array([it.age for it in chosen], np.float64),
    }
    crit["newest"] = -crit["oldest"]
    keys = [ids, *(crit[c] for c in reversed(policy)), pinned, labels[idx]]
    order = np.lexsort(keys)  # the last key sorts first
    lab = labels[idx][order]
    start = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    size = np.diff(np.r_[start, len(order)])
    keeper = idx[order[start]]
    second = order[start + 1]
    first_ = order[start]
    reasons = np.full(len(start), "the smallest id (all else equal)", object)
    undecided = np.ones(len(start), bool)
    is_pinned = np.isfinite(pinned[first_])
    reasons[is_pinned] = "SME choice"
    undecided &= ~is_pinned
    for c in policy:
        differs = undecided & (crit[c][first_] != crit[c][second])
        reasons[differs] = _REASONS[c]
        undecided &= ~differs
    keeper_of = np.repeat(keeper, size)
    members = idx[order]
    jac = (feats.signatures[members] == feats.signatures[keeper_of]).mean(axis=1)
    exact = (feats.norm_hashes[members] == feats.norm_hashes[keeper_of]) & (members != keeper_of)
    out = []
    for g, (s0, ln) in enumerate(zip(start.tolist(), size.tolist(), strict=True)):
        ms = sorted(
            (
                Member(items[m].id, items[m].revision, m == keeper[g], 1.0 if m == keeper[g] else float(j), bool(x))
                for m, j, x in zip(
                    members[s0 : s0 + ln].tolist(),
                    jac[s0 : s0 + ln].tolist(),
                    exact[s0 : s0 + ln].tolist(),
                    strict=True,
                )
            ),
            key=lambda m: m.id,
        )
        out.append(Cluster(ms[0].id, items[int(keeper[g])].id, str(reasons[g]), tuple(ms)))
    out.sort(key=lambda c: (-c.size, c.id))
    return out


def dedup(
    conversations: Sequence[Conversation],
    config: DedupConfig | None = None,
    *,
    items: Sequence[Item] | None = None,
) -> DedupResult:
    """The whole stage over conversations in memory (ids are content ids unless `items` name them)."""
    config = config or DedupConfig()
    items = list(items) if items is not None else [Item(c.id, age=i) for i, c in enumerate(conversations)]
    return find_duplicates(items, features_all(conversations, config), config)
