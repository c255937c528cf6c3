"""Dedup's config, reason codes and signature scheme, and the LSH band/row choice."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np

from curation.errors import StageError
from curation.records import canonical_json, sha256_hex

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
