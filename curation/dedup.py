"""Dedup: exact and MinHash near-duplicate clusters, a keeper per cluster, train/eval contamination.

The stage is a chain of explicit sub-steps, each a pure function that can be tested alone:

    text_view        what of a conversation is compared (all turns, or user turns only)
    normalise        Unicode NFKC, case folding, whitespace collapsed to single spaces
    segment          a row written mostly in a script without word boundaries (Chinese, Japanese,
                     Thai, Lao, Khmer, Myanmar) has those characters split apart, so its n-grams
                     are character n-grams (decided per row; `char_scripts` in the run's params)
    shingles         the set of word n-grams (a text shorter than n words is one shingle)
    MinHasher        MinHash signatures, batch-wise in numpy
    band_hashes      LSH: one 64-bit hash per band of `rows` signature values
    candidate_pairs  group-by on (band, band hash): conversations sharing a bucket
    verify_pairs     estimated Jaccard of each candidate pair from the signatures
    union_find       connected components of the duplicate pairs (exact copies included)
    choose_keepers   one conversation per cluster is kept; the others are flagged `near_duplicate`

`find_duplicates` runs the steps after the signatures; `dedup` runs all of them over a list of
conversations. `contamination(train, eval, config)` checks an eval set against a train set with the
same signatures, for the freeze step.

Signatures are bit-identical to datasketch's `MinHash(num_perm, seed)` (its default "affine32"
scheme) updated with the UTF-8 bytes of every shingle: the same `sha1_hash32` of each shingle, the
same MurmurHash3 pre-mix and the same permutations (taken from datasketch itself). They are
computed differently: a batch's words are mapped to integer ids once, each n-gram gets a 128-bit
key from its ids in numpy, sha1 runs once per distinct n-gram (chat data repeats system prompts,
greetings and templates, so most n-grams recur), and the permutations are applied column by column
over a whole batch with `np.minimum.reduceat`. The 128-bit n-gram key only decides which n-grams
share a hash; two different n-grams with the same 128-bit key would be the only way to differ from
datasketch, and any 64-bit collision that is seen sends the batch down the plain string path.

The LSH bands and rows come from datasketch's own optimal-parameter function for the threshold,
with weights that favour recall (pairs are verified afterwards, so a false candidate costs only a
comparison of two signatures).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import struct
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np

from curation.errors import StageError
from curation.progress import Progress
from curation.records import Conversation, canonical_json, sha256_hex

STAGE = "dedup"
REASON = "near_duplicate"
SEVERITY = "error"
VIEWS = ("full", "user")
KEEPER_CRITERIA: dict[str, str] = {
    "accepted": "an SME-accepted copy first (then pending, then rejected)",
    "longest_answer": "the copy with the most assistant text",
    "oldest": "the copy imported first",
    "newest": "the copy imported last",
}
# Bump when normalisation, shingling or hashing changes: stored signatures are then recomputed.
SIGNATURE_VERSION = 2
SCHEME = "affine32"
EMPTY_HASH = np.uint32(0xFFFFFFFF)  # datasketch's initial (and empty-set) hash value

_U64 = np.uint64
_P1 = _U64(0x9E3779B97F4A7C15)
_P2 = _U64(0xC2B2AE3D27D4EB4F)
_P3 = _U64(0x165667B19E3779F9)


class DedupError(StageError):
    pass


@dataclass(frozen=True)
class DedupConfig:
    """How near-duplicates are found and which copy is kept. Stored with every dedup run."""

    threshold: float = field(
        default=0.8,
        metadata={
            "help": "estimated Jaccard of the word n-gram sets at or above which two conversations are duplicates"
        },
    )
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations (signature length)"})
    ngram: int = field(
        default=5,
        metadata={"help": "words per shingle (characters, for a row in a script without word boundaries)"},
    )
    char_scripts: bool = field(
        default=True,
        metadata={
            "help": "shingle a row by characters when most of it is Chinese, Japanese, Thai, Lao, Khmer or "
            "Myanmar script (no spaces between words: word shingles would make it one shingle)"
        },
    )
    view: str = field(
        default="full", metadata={"help": "what is compared: 'full' (every turn) or 'user' (user turns only)"}
    )
    include_system: bool = field(
        default=False,
        metadata={
            "help": "include system prompts in the 'full' view (a shared system prompt makes everything look alike)"
        },
    )
    seed: int = field(default=1, metadata={"help": "MinHash seed (datasketch's default is 1)"})
    lsh_weights: tuple[float, float] = field(
        default=(0.1, 0.9),
        metadata={"help": "(false-positive, false-negative) weights for datasketch's optimal bands × rows"},
    )
    borderline_margin: float = field(
        default=0.05, metadata={"help": "pairs within this distance of the threshold are listed for review"}
    )
    keeper_policy: tuple[str, ...] = field(
        default=("accepted", "longest_answer", "oldest"),
        metadata={"help": "criteria, in order, that pick the copy to keep: " + ", ".join(KEEPER_CRITERIA)},
    )
    max_bucket: int = field(
        default=200,
        metadata={"help": "an LSH bucket with more members links each to its first member instead of all pairs"},
    )
    batch_size: int = field(default=8192, metadata={"help": "conversations per signature batch"})
    workers: int = field(
        default=0,
        metadata={"help": "processes computing signatures (0: one per CPU, at most 8, from 20,000 conversations on)"},
    )

    def __post_init__(self) -> None:
        # Configs come back from JSON (lists for tuples) when a stored run is reused.
        object.__setattr__(self, "lsh_weights", tuple(float(w) for w in self.lsh_weights))
        object.__setattr__(self, "keeper_policy", tuple(self.keeper_policy))
        if not 0.0 < self.threshold <= 1.0:
            raise DedupError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 2:
            raise DedupError(f"num_perm must be at least 2, got {self.num_perm}")
        if self.ngram < 1:
            raise DedupError(f"ngram must be at least 1, got {self.ngram}")
        if self.view not in VIEWS:
            raise DedupError(f"unknown view {self.view!r} (use {', '.join(VIEWS)})")
        if len(self.lsh_weights) != 2 or abs(sum(self.lsh_weights) - 1.0) > 1e-9:
            raise DedupError(f"lsh_weights must be two numbers that sum to 1, got {list(self.lsh_weights)}")
        if not 0.0 <= self.borderline_margin < 1.0:
            raise DedupError(f"borderline_margin must be in [0, 1), got {self.borderline_margin}")
        unknown = [c for c in self.keeper_policy if c not in KEEPER_CRITERIA]
        if unknown:
            raise DedupError(f"unknown keeper criterion {unknown[0]!r} (use {', '.join(KEEPER_CRITERIA)})")
        if self.max_bucket < 2 or self.batch_size < 1 or self.workers < 0:
            raise DedupError("max_bucket must be at least 2, batch_size at least 1 and workers at least 0")

    @property
    def bands_rows(self) -> tuple[int, int]:
        return lsh_params(self.threshold, self.num_perm, self.lsh_weights)

    def params(self) -> dict[str, Any]:
        """The parameters as `sift dedup --json` reports them."""
        b, r = self.bands_rows
        return {
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "bands": b,
            "rows": r,
            "ngram": self.ngram,
            "view": self.view,
            "char_scripts": self.char_scripts,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lsh_weights"] = list(self.lsh_weights)
        d["keeper_policy"] = list(self.keeper_policy)
        return d

    def signature_key(self) -> str:
        """What a stored signature depends on; the threshold and LSH shape are not part of it."""
        return sha256_hex(
            canonical_json(
                {
                    "view": self.view,
                    "include_system": self.include_system,
                    "ngram": self.ngram,
                    "char_scripts": self.char_scripts,
                    "num_perm": self.num_perm,
                    "seed": self.seed,
                    "scheme": SCHEME,
                    "version": SIGNATURE_VERSION,
                }
            )
        )[:16]


def config_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(DedupConfig)}


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.1, 0.9)) -> tuple[int, int]:
    """(bands, rows) from datasketch's optimal-parameter search for this threshold."""
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, weights[0], weights[1])
    if b < 2:  # datasketch's MinHashLSH refuses fewer than 2 bands too
        b, r = 2, num_perm // 2
    return int(b), int(r)


# ---------------------------------------------------------------- text view, normalise, shingles


def _content_text(content: Any) -> str:
    """Message.text for a message dict's content (text, None, or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if isinstance(p, dict) and p.get("text"))


def text_view_dict(content: Mapping[str, Any], view: str = "full", include_system: bool = False) -> str:
    """`text_view` over a conversation's content dict (what the store keeps as JSON)."""
    parts: list[str] = []
    for m in content.get("messages") or ():
        role = m.get("role")
        if view == "user":
            if role != "user":
                continue
        elif role == "system" and not include_system:
            continue
        text = _content_text(m.get("content"))
        if text:
            parts.append(text)
        if view == "full":
            for c in m.get("tool_calls") or ():
                parts.append(f"{c.get('name', '')} {c.get('arguments', '')}")
    return "\n".join(parts)


def text_view(conv: Conversation, view: str = "full", include_system: bool = False) -> str:
    """The text compared for duplicates: every turn's text and tool calls ('full', system prompts
    only when asked), or the user turns alone ('user'), one turn per line."""
    parts: list[str] = []
    for m in conv.messages:
        if view == "user":
            if m.role != "user":
                continue
        elif m.role == "system" and not include_system:
            continue
        text = m.text
        if text:
            parts.append(text)
        if view == "full":
            parts.extend(f"{c.name} {c.arguments}" for c in m.tool_calls)
    return "\n".join(parts)


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace runs collapsed to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalise_many(texts: Sequence[str]) -> list[str]:
    """`normalise` over a batch: one NFKC and one case-fold call for the whole batch (NUL is a
    starter that nothing composes with, so joining on it changes nothing)."""
    if any("\x00" in t for t in texts):
        return [normalise(t) for t in texts]
    big = unicodedata.normalize("NFKC", "\x00".join(texts)).casefold()
    return [" ".join(t.split()) for t in big.split("\x00")]


# Scripts written without spaces between words (CJK ideographs and kana, Thai, Lao, Myanmar, Khmer).
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f"
    "\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
UNSPACED_SHARE = 0.3  # a row is shingled by characters when this share of its letters is unspaced script


def segment(text: str) -> str:
    """A normalised text with every character of an unspaced script standing alone, when at least
    `UNSPACED_SHARE` of its non-space characters are such; otherwise the text unchanged. Word
    n-grams of the result are character n-grams of the Chinese/Japanese/Thai runs."""
    if text.isascii():
        return text
    n = len(_UNSPACED.findall(text))
    if not n or n < UNSPACED_SHARE * (len(text) - text.count(" ")):
        return text
    return " ".join(_UNSPACED.sub(lambda m: f" {m.group()} ", text).split())


def shingles(text: str, n: int = 5) -> list[str]:
    """Distinct word n-grams of a normalised text, in order of first appearance. A text shorter
    than n words is one shingle (itself); an empty text has none."""
    if not text:
        return []
    words = text.split(" ")
    if len(words) <= n:
        return [text]
    return list(dict.fromkeys(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)))


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash: the first 4 bytes of sha1, little-endian."""
    return int(struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0])


def norm_hash(text: str) -> int:
    """64 bits of sha256 of the normalised text: equal values are exact duplicates."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def answer_chars(conv: Conversation | Mapping[str, Any]) -> int:
    """Characters of assistant text (the 'longest answer' keeper criterion)."""
    if isinstance(conv, Conversation):
        return sum(len(m.text) for m in conv.messages if m.role == "assistant")
    return sum(len(_content_text(m.get("content"))) for m in conv.get("messages") or () if m.get("role") == "assistant")


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


class _Vocab(dict):  # type: ignore[type-arg]
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
        conversations = [json.loads(c) for c in conversations]  # type: ignore[arg-type]
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


def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Two texts as (piece, differs) runs for a side-by-side view: words are compared after
    normalisation, whitespace is kept as it was. A piece is a word or the whitespace after it."""
    import difflib
    import re

    def pieces(t: str) -> tuple[list[str], list[str]]:
        toks = re.findall(r"\S+\s*", t)
        lead = re.match(r"\s*", t)
        if lead and lead.group(0) and toks:
            toks[0] = lead.group(0) + toks[0]
        return toks, [normalise(x) for x in toks]

    pa_, na = pieces(a)
    pb, nb = pieces(b)
    out_a = [(x, True) for x in pa_]
    out_b = [(x, True) for x in pb]
    for block in difflib.SequenceMatcher(None, na, nb, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            out_a[block.a + k] = (pa_[block.a + k], False)
            out_b[block.b + k] = (pb[block.b + k], False)

    def merge(runs: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
        merged: list[tuple[str, bool]] = []
        for text, d in runs:
            if merged and merged[-1][1] == d:
                merged[-1] = (merged[-1][0] + text, d)
            else:
                merged.append((text, d))
        return merged

    return merge(out_a), merge(out_b)


def signature_bytes(sig: np.ndarray) -> list[bytes]:
    """Rows of a signature matrix as little-endian bytes (how the store keeps them)."""
    s = np.ascontiguousarray(sig, dtype="<u4")
    return [row.tobytes() for row in s]


def signatures_from_bytes(blobs: Sequence[bytes], num_perm: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, num_perm), np.uint32)
    return np.frombuffer(b"".join(blobs), dtype="<u4").reshape(len(blobs), num_perm).astype(np.uint32)


__all__ = [
    "REASON",
    "STAGE",
    "VIEWS",
    "Cluster",
    "ContaminationPair",
    "DedupConfig",
    "DedupError",
    "DedupResult",
    "Features",
    "Item",
    "Member",
    "MinHasher",
    "Pair",
    "band_hashes",
    "candidate_pairs",
    "choose_keeper",
    "contamination",
    "dedup",
    "exact_pairs",
    "features",
    "features_all",
    "find_duplicates",
    "normalise",
    "normalise_many",
    "shingles",
    "straddling_clusters",
    "text_view",
    "union_find",
    "verify_pairs",
    "word_diff",
]
