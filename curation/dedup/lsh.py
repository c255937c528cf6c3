"""LSH bands, candidate pairs from shared buckets, their verification, exact pairs and union-find."""

from __future__ import annotations

import numpy as np

from curation.dedup.config import _P1, _P2, _P3, _U64
from curation.dedup.minhash import _fmix64

# ---------------------------------------------------------------- LSH bands and candidate pairs


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: band i hashes signature values [i·rows, (i+1)·rows). Equal bands give
    equal hashes; the reverse holds but for 64-bit collisions, which verification removes."""
    out = np.empty((len(signatures), bands), _U64)
    for i in range(bands):
        h = np.full(len(signatures), (i * int(_P2) + int(_P3)) % (1 << 64), _U64)
        for c in range(i * rows, (i + 1) * rows):
            h *= _P1
            h += signatures[:, c]
        out[:, i] = _fmix64(h)
    return out


def candidate_pairs(bands: np.ndarray, max_bucket: int = 200) -> np.ndarray:
    """Pairs (i < j) of rows that share a bucket, i.e. a (band, band hash) group. A bucket of up to
    `max_bucket` members gives all its pairs; a larger one links every member to its first (the
    clusters are the same when the members really are alike, and the pair count stays linear).
    Returns an (m, 2) int64 array, sorted and without repeats."""
    n = len(bands)
    chunks: list[np.ndarray] = []
    for i in range(bands.shape[1]):
        order = np.argsort(bands[:, i], kind="stable")
        h = bands[order, i]
        new = np.empty(n, bool)
        if n == 0:
            continue
        new[0] = True
        np.not_equal(h[1:], h[:-1], out=new[1:])
        run_start = np.flatnonzero(new)
        run_len = np.diff(np.append(run_start, n))
        multi = run_len > 1
        if not multi.any():
            continue
        starts, lens = run_start[multi], run_len[multi]
        small = lens <= max_bucket
        # star edges of large buckets
        for s, ln in zip(starts[~small].tolist(), lens[~small].tolist(), strict=True):
            members = order[s : s + ln]
            chunks.append(np.stack([np.full(ln - 1, members[0]), members[1:]], axis=1))
        if small.any():
            s_small, l_small = starts[small], lens[small]
            pos = np.repeat(s_small, l_small) + (
                np.arange(l_small.sum()) - np.repeat(np.cumsum(l_small) - l_small, l_small)
            )
            end = np.repeat(s_small + l_small, l_small)
            for d in range(1, int(l_small.max())):
                ok = pos + d < end
                if not ok.any():
                    break
                pos, end = pos[ok], end[ok]
                chunks.append(np.stack([order[pos], order[pos + d]], axis=1))
    if not chunks:
        return np.empty((0, 2), np.int64)
    pairs = np.concatenate(chunks).astype(np.int64)
    pairs.sort(axis=1)
    return _unique_pairs(pairs, n)


def _unique_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    code = np.unique(pairs[:, 0] * max(n, 1) + pairs[:, 1])
    return np.stack([code // max(n, 1), code % max(n, 1)], axis=1)


def verify_pairs(signatures: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Estimated Jaccard of each pair: the share of equal signature values (datasketch's
    `MinHash.jaccard`)."""
    out = np.empty(len(pairs), np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        out[s : s + chunk] = (signatures[p[:, 0]] == signatures[p[:, 1]]).mean(axis=1)
    return out


def exact_pairs(norm_hashes: np.ndarray, live: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Pairs linking every exact copy (equal normalised text) to the first of its group, and the
    number of groups with more than one member."""
    idx = np.arange(len(norm_hashes)) if live is None else np.flatnonzero(live)
    if len(idx) == 0:
        return np.empty((0, 2), np.int64), 0
    h = norm_hashes[idx]
    order = np.argsort(h, kind="stable")
    hs = h[order]
    new = np.empty(len(hs), bool)
    new[0] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    run = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    lead = idx[order[starts[run]]]
    members = idx[order]
    keep = ~new
    groups = int((np.diff(np.append(starts, len(hs))) > 1).sum())
    pairs = np.stack([lead[keep], members[keep]], axis=1).astype(np.int64)
    pairs.sort(axis=1)
    return pairs, groups


# ---------------------------------------------------------------- clusters


def union_find(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of n nodes: label = the smallest node of the component.

    Union-find in data-parallel form (hook every root onto the smaller root it is linked to, then
    compress paths), so it runs over arrays here and maps onto a DataFrame engine at scale."""
    parent = np.arange(n, dtype=np.int64)
    if len(edges) == 0:
        return parent
    u, v = edges[:, 0], edges[:, 1]
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            return parent
        u, v, pu, pv = u[differ], v[differ], pu[differ], pv[differ]
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
