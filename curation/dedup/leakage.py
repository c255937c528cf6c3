"""Train/eval contamination: eval rows near a train row, and clusters that straddle splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from curation.dedup.config import DedupConfig
from curation.dedup.lsh import band_hashes
from curation.dedup.minhash import Features, features_all
from curation.records import Conversation

# ---------------------------------------------------------------- contamination


@dataclass(frozen=True, slots=True)
class ContaminationPair:
    """An eval conversation that duplicates a train conversation."""

    eval_id: str
    train_id: str
    jaccard: float
    exact: bool


def _conv_id(c: Conversation) -> str:
    cid = c.metadata.get("conversation_id") if isinstance(c.metadata, Mapping) else None
    return str(cid) if cid else c.id


def contamination_from_features(
    train: Features, eval: Features, config: DedupConfig
) -> list[tuple[int, int, float, bool]]:
    """(eval index, train index, estimated Jaccard, exact) for every eval row that is an exact copy
    of a train row or shares an LSH bucket with one at Jaccard ≥ threshold. Every train row in a
    shared bucket is compared (no bucket cap), so nothing is missed for being common."""
    b, r = config.bands_rows
    t_live, e_live = np.flatnonzero(train.n_shingles > 0), np.flatnonzero(eval.n_shingles > 0)
    found: dict[tuple[int, int], tuple[float, bool]] = {}
    # exact copies: join on the normalised-text hash
    th = train.norm_hashes[t_live]
    order = np.argsort(th, kind="stable")
    ths = th[order]
    eh = eval.norm_hashes[e_live]
    lo, hi = np.searchsorted(ths, eh, "left"), np.searchsorted(ths, eh, "right")
    for e_i, (s, f) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        for k in range(s, f):
            found[(int(e_live[e_i]), int(t_live[order[k]]))] = (1.0, True)
    if len(t_live) and len(e_live):
        tb = band_hashes(train.signatures[t_live], b, r)
        ebh = band_hashes(eval.signatures[e_live], b, r)
        cand: list[np.ndarray] = []
        for i in range(b):
            o = np.argsort(tb[:, i], kind="stable")
            sh = tb[o, i]
            lo, hi = np.searchsorted(sh, ebh[:, i], "left"), np.searchsorted(sh, ebh[:, i], "right")
            cnt = hi - lo
            if not cnt.any():
                continue
            e_rep = np.repeat(np.arange(len(e_live)), cnt)
            within = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            cand.append(np.stack([e_live[e_rep], t_live[o[np.repeat(lo, cnt) + within]]], axis=1))
        if cand:
            pairs = np.unique(np.concatenate(cand), axis=0)
            est = (eval.signatures[pairs[:, 0]] == train.signatures[pairs[:, 1]]).mean(axis=1)
            for (e_i, t_i), j in zip(pairs.tolist(), est.tolist(), strict=True):
                if j >= config.threshold and (e_i, t_i) not in found:
                    found[(e_i, t_i)] = (j, False)
    return sorted((e, t, j, x) for (e, t), (j, x) in found.items())


def contamination(
    train: Sequence[Conversation] | Mapping[str, Conversation],
    eval: Sequence[Conversation] | Mapping[str, Conversation],
    config: DedupConfig | None = None,
) -> list[ContaminationPair]:
    """Eval conversations that duplicate train conversations (exact copies after normalisation, or
    estimated Jaccard ≥ the threshold), sorted by (eval id, train id).

    Conversations come as a mapping id → Conversation, or as a sequence whose ids are
    `metadata["conversation_id"]` when present (a revised conversation's content id is not its
    store id) and the content id otherwise. An empty result means eval is clean."""
    config = config or DedupConfig()

    def named(x: Sequence[Conversation] | Mapping[str, Conversation]) -> tuple[list[str], list[Conversation]]:
        if isinstance(x, Mapping):
            return list(x.keys()), list(x.values())
        return [_conv_id(c) for c in x], list(x)

    t_ids, t_convs = named(train)
    e_ids, e_convs = named(eval)
    tf = features_all(t_convs, config)
    ef = features_all(e_convs, config)
    hits = contamination_from_features(tf, ef, config)
    out = {(e_ids[e], t_ids[t]): ContaminationPair(e_ids[e], t_ids[t], round(j, 4), x) for e, t, j, x in hits}
    return [out[k] for k in sorted(out)]


def straddling_clusters(split_of: Mapping[str, str], cluster_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Clusters whose members landed in more than one split: cluster id → sorted splits. The freeze
    step must leave this empty (a cluster lives on one side)."""
    seen: dict[str, set[str]] = {}
    for cid, split in split_of.items():
        cl = cluster_of.get(cid)
        if cl is not None:
            seen.setdefault(cl, set()).add(split)
    return {c: sorted(s) for c, s in sorted(seen.items()) if len(s) > 1}
