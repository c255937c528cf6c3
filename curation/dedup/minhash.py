"""MinHash signatures, bit-identical to datasketch's, computed batch-wise in numpy; `features_all`
over forked workers at scale."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.dedup.config import _P1, _P2, _P3, _U64, EMPTY_HASH, SCHEME, DedupConfig
from curation.dedup.text import answer_chars, norm_hash, normalise_many, segment, sha1_hash32, text_view, text_view_dict
from curation.progress import Progress
from curation.records import Conversation

# ---------------------------------------------------------------- MinHash signatures


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (datasketch's pre-mix for the affine32 scheme)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct values, an index of one occurrence of each, and the inverse — like
    `np.unique(return_index=True, return_inverse=True)` with an unstable (faster) sort."""
    order = np.argsort(values)
    s = values[order]
    new = np.empty(len(s), bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    inv = np.empty(len(s), np.int64)
    inv[order] = np.cumsum(new) - 1
    return s[new], order[new], inv


class _Vocab(dict):
    """word (bytes) → dense id, assigned on first sight."""

    def __missing__(self, key: bytes) -> int:
        v = len(self)
        self[key] = v
        return v


class MinHasher:
    """MinHash signatures of normalised texts, batch-wise, equal to datasketch's.

    One instance keeps a word vocabulary and a cache of n-gram hashes across batches, so it
    should live for one run (or one contamination check) and then be dropped.
    """

    # Above this many cached n-gram hashes new ones are no longer cached (memory stays bounded).
    CACHE_LIMIT = 8_000_000
    # Shingle values per numpy chunk: the working set stays in the CPU cache.
    CHUNK = 1 << 16

    def __init__(self, num_perm: int = 128, seed: int = 1, ngram: int = 5) -> None:
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        self.a = np.ascontiguousarray(a, dtype=np.uint32)
        self.b = np.ascontiguousarray(b, dtype=np.uint32)
        self.num_perm = num_perm
        self.ngram = ngram
        self._vocab = _Vocab()
        self._keys = np.empty(0, _U64)  # sorted 64-bit n-gram keys
        self._checks = np.empty(0, _U64)  # a second, independent 64-bit key of the same n-gram
        self._hvs = np.empty(0, np.uint32)  # sha1_hash32 of the n-gram
        self.stats = {"shingles": 0, "sha1": 0, "fallback_batches": 0}

    # -- step 1: shingle hashes

    def shingle_hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """sha1_hash32 of every shingle of every (normalised) text: (values, offsets) with the
        values of text i in values[offsets[i]:offsets[i+1]] (duplicates within a text allowed)."""
        nonempty = [i for i, t in enumerate(texts) if t]
        counts = np.zeros(len(texts), np.int64)
        if not nonempty:
            return np.empty(0, np.uint32), np.zeros(len(texts) + 1, np.int64)
        docs = [texts[i] for i in nonempty]
        hv, per_doc = self._hash_batch(docs)
        counts[nonempty] = per_doc
        offsets = np.zeros(len(texts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return hv, offsets

    def _hash_batch(self, docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
        n = self.ngram
        joined = " ".join(docs).encode("utf-8")
        words = joined.split(b" ")
        n_words = np.fromiter((d.count(" ") + 1 for d in docs), np.int64, len(docs))
        ids = np.fromiter(map(self._vocab.__getitem__, words), _U64, len(words))
        # byte offset where each word starts in `joined` (words are separated by one space)
        spaces = np.flatnonzero(np.frombuffer(joined, np.uint8) == 32)
        wstart = np.concatenate([[0], spaces + 1, [len(joined) + 1]]).astype(np.int64)
        doc_w0 = np.zeros(len(docs), np.int64)
        np.cumsum(n_words[:-1], out=doc_w0[1:])
        per_doc = np.maximum(n_words - n + 1, 1)  # a short text is one shingle of all its words
        doc_of = np.repeat(np.arange(len(docs)), per_doc)
        sh0 = np.zeros(len(docs), np.int64)
        np.cumsum(per_doc[:-1], out=sh0[1:])
        first = np.arange(len(doc_of)) - sh0[doc_of] + doc_w0[doc_of]  # first word of each shingle
        length = np.minimum(n_words, n)[doc_of]
        key, check = self._keys_of(ids, first, length)
        hv = self._lookup(key, check, joined, wstart, first, length)
        if hv is None:  # a 64-bit key collision: do this batch the plain way
            self.stats["fallback_batches"] += 1
            hv = np.array([sha1_hash32(s.encode("utf-8")) for d in docs for s in _all_shingles(d, n)], np.uint32)
        self.stats["shingles"] += len(hv)
        return hv, per_doc

    @staticmethod
    def _keys_of(ids: np.ndarray, first: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_max = int(length.max())
        short = bool((length < n_max).any())
        key = length.astype(_U64) * _P3
        check = length.astype(_U64) ^ _P1
        last = len(ids) - 1
        for j in range(n_max):
            idx = first + j
            w = ids[np.minimum(idx, last)] if short else ids[idx]
            k2 = key * _P1 + w
            c2 = (check ^ w) * _P2
            c2 ^= c2 >> _U64(29)
            if short:
                live = j < length
                key = np.where(live, k2, key)
                check = np.where(live, c2, check)
            else:
                key, check = k2, c2
        return _fmix64(key), _fmix64(check ^ _P3)

    def _lookup(
        self,
        key: np.ndarray,
        check: np.ndarray,
        joined: bytes,
        wstart: np.ndarray,
        first: np.ndarray,
        length: np.ndarray,
    ) -> np.ndarray | None:
        # distinct n-grams of the batch first (a sort is cache-friendly; most n-grams repeat)
        uk, rep, inv = _unique(key)
        if (check != check[rep][inv]).any():
            return None
        uhv = np.empty(len(uk), np.uint32)
        miss = np.ones(len(uk), bool)
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, uk), len(self._keys) - 1)
            hit = self._keys[pos] == uk
            if (self._checks[pos[hit]] != check[rep[hit]]).any():
                return None
            uhv[hit] = self._hvs[pos[hit]]
            miss = ~hit
        todo = np.flatnonzero(miss)
        if len(todo):
            rep_at = rep[todo]
            starts = wstart[first[rep_at]].tolist()
            ends = (wstart[first[rep_at] + length[rep_at]] - 1).tolist()
            sha1 = hashlib.sha1
            digests = b"".join([sha1(joined[s:e]).digest()[:4] for s, e in zip(starts, ends, strict=True)])
            new = np.frombuffer(digests, dtype="<u4").astype(np.uint32)
            self.stats["sha1"] += len(new)
            uhv[todo] = new
            if len(self._keys) + len(todo) <= self.CACHE_LIMIT:
                at = np.searchsorted(self._keys, uk[todo])
                self._keys = np.insert(self._keys, at, uk[todo])
                self._checks = np.insert(self._checks, at, check[rep_at])
                self._hvs = np.insert(self._hvs, at, new)
        return uhv[inv]

    # -- step 2: permutations and minima

    def signatures_from_hashes(self, hv: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(texts, num_perm) uint32: for each permutation k, min over a text's shingles of
        a_k · fmix32(h) + b_k mod 2^32 (datasketch's affine32 update); empty texts get 2^32 − 1."""
        n_docs = len(offsets) - 1
        sig = np.full((n_docs, self.num_perm), EMPTY_HASH, np.uint32)
        if len(hv) == 0:
            return sig
        h = _fmix32(hv.astype(np.uint32, copy=False))
        counts = np.diff(offsets)
        docs = np.flatnonzero(counts > 0)
        starts = offsets[docs]
        ends = offsets[docs + 1]
        buf = np.empty(max(self.CHUNK, int(counts.max())), np.uint32)
        d0 = 0
        while d0 < len(docs):
            # as many whole texts as fit in one chunk (at least one)
            d1 = max(d0 + 1, int(np.searchsorted(ends, starts[d0] + self.CHUNK, side="right")))
            s0, s1 = starts[d0], ends[d1 - 1]
            hh = h[s0:s1]
            bb = buf[: s1 - s0]
            seg = starts[d0:d1] - s0
            out = np.empty((d1 - d0, self.num_perm), np.uint32)
            for k in range(self.num_perm):
                np.multiply(hh, self.a[k], out=bb)
                np.add(bb, self.b[k], out=bb)
                out[:, k] = np.minimum.reduceat(bb, seg)
            sig[docs[d0:d1]] = out
            d0 = d1
        return sig

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """Signatures of normalised texts: row i equals datasketch's
        `MinHash(num_perm, seed)` updated with `s.encode()` for every s in `shingles(texts[i], n)`."""
        hv, offsets = self.shingle_hashes(texts)
        return self.signatures_from_hashes(hv, offsets)


def _all_shingles(text: str, n: int) -> list[str]:
    words = text.split(" ")
    if len(words) <= n:
        return [text]
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


@dataclass
class Features:
    """What dedup needs of each conversation, aligned by position: the signature, the hash of
    the normalised text (exact copies), the shingle count (0 = nothing to compare) and the
    assistant text length (keeper choice)."""

    signatures: np.ndarray  # (n, num_perm) uint32
    norm_hashes: np.ndarray  # (n,) uint64
    n_shingles: np.ndarray  # (n,) int32
    answer_chars: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.norm_hashes)

    @classmethod
    def empty(cls, num_perm: int) -> Features:
        return cls(np.empty((0, num_perm), np.uint32), np.empty(0, _U64), np.empty(0, np.int32), np.empty(0, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[Features], num_perm: int) -> Features:
        if not parts:
            return cls.empty(num_perm)
        return cls(
            np.concatenate([p.signatures for p in parts]).reshape(-1, num_perm),
            np.concatenate([p.norm_hashes for p in parts]),
            np.concatenate([p.n_shingles for p in parts]),
            np.concatenate([p.answer_chars for p in parts]),
        )

    def take(self, idx: np.ndarray | list[int]) -> Features:
        return Features(self.signatures[idx], self.norm_hashes[idx], self.n_shingles[idx], self.answer_chars[idx])


def features(
    conversations: Sequence[Conversation | Mapping[str, Any]], config: DedupConfig, hasher: MinHasher | None = None
) -> Features:
    """View → normalise → shingles → signatures for a batch (Conversations, content dicts, or
    content JSON as the store keeps it)."""
    hasher = hasher or MinHasher(config.num_perm, config.seed, config.ngram)
    if conversations and isinstance(conversations[0], str):
        conversations = [json.loads(c) for c in conversations]
    views = [
        text_view(c, config.view, config.include_system)
        if isinstance(c, Conversation)
        else text_view_dict(c, config.view, config.include_system)
        for c in conversations
    ]
    texts = normalise_many(views)
    answers = np.fromiter((answer_chars(c) for c in conversations), np.int64, len(conversations))
    hv, offsets = hasher.shingle_hashes([segment(t) for t in texts] if config.char_scripts else texts)
    return Features(
        hasher.signatures_from_hashes(hv, offsets),
        np.array([norm_hash(t) for t in texts], _U64),
        np.diff(offsets).astype(np.int32),
        answers,
    )


def worker_count(config: DedupConfig, n: int) -> int:
    """Processes for the signatures: `config.workers`, or one per CPU (at most 8) from 20,000
    conversations on. Only where forking is safe: Linux, and a process with no other threads (the
    CLI, scripts, the benchmark); elsewhere (e.g. inside the Streamlit server) one."""
    import sys
    import threading

    if sys.platform != "linux" or threading.active_count() > 1:
        return 1
    if config.workers:
        return config.workers
    return 1 if n < 20_000 else max(1, min(8, os.cpu_count() or 1))


def _features_part(conversations: Sequence[Any], config: DedupConfig) -> Features:
    hasher = MinHasher(config.num_perm, config.seed, config.ngram)
    parts = [
        features(conversations[s : s + config.batch_size], config, hasher)
        for s in range(0, len(conversations), config.batch_size)
    ]
    return Features.concat(parts, config.num_perm)


# What forked workers read: set only while `features_all`'s pool runs, so the input is inherited
# by the workers instead of pickled to them.
_FORK_INPUT: Sequence[Any] = ()


def _features_slice(a: int, b: int, config: DedupConfig) -> Features:
    return _features_part(_FORK_INPUT[a:b], config)


def features_all(
    conversations: Sequence[Any],
    config: DedupConfig,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Features:
    """`features` over any number of conversations: batch after batch in this process, or — the
    scale path — a map over contiguous parts in forked worker processes, each with its own hasher.
    The result does not depend on the number of workers."""
    global _FORK_INPUT
    n = len(conversations)
    w = min(worker_count(config, n) if workers is None else workers, max(1, n // config.batch_size + 1))
    if w <= 1:
        out = []
        for s in range(0, n, config.batch_size):
            out.append(_features_part(conversations[s : s + config.batch_size], config))
            if progress:
                progress(min(n, s + config.batch_size), n)
        return Features.concat(out, config.num_perm)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bounds = np.linspace(0, n, w + 1).astype(int).tolist()
    _FORK_INPUT = conversations
    try:
        with ProcessPoolExecutor(w, mp_context=multiprocessing.get_context("fork")) as ex:
            futures = [ex.submit(_features_slice, a, b, config) for a, b in itertools.pairwise(bounds)]
            results = []
            for f, b in zip(futures, bounds[1:], strict=True):
                results.append(f.result())
                if progress:
                    progress(b, n)
    finally:
        _FORK_INPUT = ()
    return Features.concat(results, config.num_perm)


def signature_bytes(sig: np.ndarray) -> list[bytes]:
    """Rows of a signature matrix as little-endian bytes (how the store keeps them)."""
    s = np.ascontiguousarray(sig, dtype="<u4")
    return [row.tobytes() for row in s]


def signatures_from_bytes(blobs: Sequence[bytes], num_perm: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, num_perm), np.uint32)
    return np.frombuffer(b"".join(blobs), dtype="<u4").reshape(len(blobs), num_perm).astype(np.uint32)
