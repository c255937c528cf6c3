"""Freeze step, pure part: families, a seeded-hash train/eval split, and the leakage check.

A *family* is everything that must land on one side of the split: a near-duplicate cluster (from
dedup), a conversation and its paraphrase descendants (provenance `parent_id`), and conversations
sharing a `family_id` (the source conversation a generated row descends from). Families are
connected components (union-find), named by their smallest conversation id.

Each family is ranked by sha256(seed, family name); the lowest-ranked families fill the eval quota
(round(eval_fraction × candidates), shared among strata by largest remainder when stratifying by a
tag). The same candidates and seed therefore always give the same split, whatever order they come in.

The leakage check compares eval against train. Dedup's near-duplicate `contamination` function is
passed in when it exists; without it, `exact_overlap` finds conversations whose turns are equal
after normalisation (NFKC, case, whitespace; system prompts ignored).
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from curation.errors import StageError
from curation.records import Conversation, canonical_json, sha256_hex

INCLUDE = ("accepted", "not-rejected")
SPLITS = ("train", "eval")

# Exclusion reasons, in the order they are tested: a conversation counts under the first that applies.
EXCLUSION_REASONS = ("rejected", "not_accepted", "validation_error", "near_duplicate", "pii_unresolved")


class SplitError(StageError):
    pass


class LeakageError(SplitError):
    """Eval conversations duplicate train conversations; `leaks` lists the pairs."""

    def __init__(self, leaks: Sequence[Leak], limit: int = 10) -> None:
        shown = ", ".join(f"eval {x.eval_id} ~ train {x.train_id}" for x in leaks[:limit])
        more = f" and {len(leaks) - limit} more" if len(leaks) > limit else ""
        super().__init__(
            f"refusing to freeze: {len(leaks)} eval conversation(s) duplicate train ({shown}{more}); "
            "run dedup so duplicates are grouped, or reject one of each pair"
        )
        self.leaks = list(leaks)


@dataclass(slots=True)
class FreezeConfig:
    """How a version is chosen and split. Stored in the version's manifest."""

    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of the included conversations held out for eval (0 ≤ f < 1)"}
    )
    seed: int = field(default=42, metadata={"help": "seed of the family hash: same seed, same split"})
    include: str = field(
        default="accepted",
        metadata={"help": "which review statuses are frozen: accepted, or not-rejected (accepted + pending)"},
    )
    stratify_by: str | None = field(
        default=None,
        metadata={
            "help": "tag to stratify by: tags 'TAG:value' give the stratum 'value' (a bare 'TAG' tag is its "
            "own stratum), so each stratum is split in the same proportion"
        },
    )
    exclude_unresolved_pii: bool = field(
        default=True, metadata={"help": "leave out conversations with PII findings nobody has resolved"}
    )

    def check(self) -> None:
        if not 0 <= self.eval_fraction < 1:
            raise SplitError(f"eval fraction must be at least 0 and below 1 (got {self.eval_fraction})")
        if self.include not in INCLUDE:
            raise SplitError(f"unknown include {self.include!r} (use {', '.join(INCLUDE)})")
        if self.stratify_by is not None and not self.stratify_by.strip():
            raise SplitError("stratify-by needs a tag name")

    def to_dict(self) -> dict[str, Any]:
        return {
            "eval_fraction": self.eval_fraction,
            "seed": self.seed,
            "include": self.include,
            "stratify_by": self.stratify_by,
            "exclude_unresolved_pii": self.exclude_unresolved_pii,
        }


# ---------------------------------------------------------------- families


@dataclass(frozen=True, slots=True)
class Member:
    """What links one conversation to others. `family_id` and `parents` name conversations."""

    id: str
    family_id: str | None = None
    parents: tuple[str, ...] = ()
    cluster_id: str | None = None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller name wins, so the result does not depend on the order of unions.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def families(members: Iterable[Member]) -> dict[str, str]:
    """Conversation id → family name (the smallest conversation id in its component).

    Pass every conversation, not only those being frozen: two paraphrases of a rejected parent
    are still one family.
    """
    uf = _UnionFind()
    ids: list[str] = []
    for m in members:
        ids.append(m.id)
        node = "c:" + m.id
        uf.find(node)
        if m.family_id:
            uf.union(node, "c:" + m.family_id)
        for p in m.parents:
            uf.union(node, "c:" + p)
        if m.cluster_id is not None:
            # Cluster nodes sort after conversation nodes ("d" > "c"), so they never name a family.
            uf.union(node, "d:" + str(m.cluster_id))
    names: dict[str, str] = {}
    for node in list(uf.parent):
        if node.startswith("c:"):
            root = uf.find(node)
            if root not in names or node < names[root]:
                names[root] = node
    return {i: names[uf.find("c:" + i)][2:] for i in ids}


def stratum(tags: Iterable[str], tag: str) -> str:
    """The stratum a conversation's tags put it in: the values of its 'TAG:value' tags (joined by
    ','), 'TAG' for a bare TAG tag, '' when it has neither."""
    prefix = tag + ":"
    values = sorted({t[len(prefix) :] for t in tags if t.startswith(prefix)} | ({tag} if tag in tags else set()))
    return ",".join(values)


# ---------------------------------------------------------------- split


def family_rank(seed: int, family: str) -> str:
    return hashlib.sha256(f"{seed}\x00{family}".encode()).hexdigest()


def _quotas(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Share `total` among strata in proportion to their sizes (largest remainder, ties by name)."""
    n = sum(sizes.values())
    if n == 0:
        return dict.fromkeys(sizes, 0)
    exact = {s: total * k / n for s, k in sizes.items()}
    out = {s: math.floor(q) for s, q in exact.items()}
    rest = total - sum(out.values())
    for s in sorted(sizes, key=lambda s: (-(exact[s] - out[s]), s))[:rest]:
        out[s] += 1
    return out


def assign(
    groups: Mapping[str, Sequence[str]],
    *,
    eval_fraction: float,
    seed: int,
    strata: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Conversation id → "train" or "eval", whole families at a time.

    `groups`: family name → the ids of that family being frozen. `strata`: family name → stratum.
    Families are taken into eval in order of their seeded hash while they fit the quota; a family
    larger than what is left of its quota stays in train.
    """
    total = sum(len(v) for v in groups.values())
    target = math.floor(eval_fraction * total + 0.5)
    by_stratum: dict[str, list[str]] = {}
    for fam in groups:
        by_stratum.setdefault(strata.get(fam, "") if strata else "", []).append(fam)
    quotas = _quotas({s: sum(len(groups[f]) for f in fams) for s, fams in by_stratum.items()}, target)
    out: dict[str, str] = {}
    for s, fams in by_stratum.items():
        left = quotas[s]
        for fam in sorted(fams, key=lambda f: family_rank(seed, f)):
            side = "train"
            if 0 < len(groups[fam]) <= left:
                side = "eval"
                left -= len(groups[fam])
            for cid in groups[fam]:
                out[cid] = side
    return out


def family_strata(members: Mapping[str, str], tags: Mapping[str, Sequence[str]], tag: str) -> dict[str, str]:
    """Family name → its stratum: the most common stratum among its members (ties: smallest)."""
    votes: dict[str, dict[str, int]] = {}
    for cid, fam in members.items():
        s = stratum(tags.get(cid, ()), tag)
        v = votes.setdefault(fam, {})
        v[s] = v.get(s, 0) + 1
    return {fam: min(v, key=lambda s: (-v[s], s)) for fam, v in votes.items()}


# ---------------------------------------------------------------- leakage


@dataclass(frozen=True, slots=True)
class Leak:
    eval_id: str
    train_id: str
    similarity: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"eval": self.eval_id, "train": self.train_id, "similarity": self.similarity, "method": self.method}


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def leak_key(conv: Conversation) -> str:
    """Hash of the non-system turns after normalisation: equal keys mean the same exchange."""
    turns = [
        [m.role, _norm(m.text), [[c.name, _norm(c.arguments)] for c in m.tool_calls]]
        for m in conv.messages
        if m.role != "system"
    ]
    return sha256_hex(canonical_json(turns))


def exact_overlap(train: Mapping[str, Conversation], eval: Mapping[str, Conversation]) -> list[Leak]:
    """Eval conversations whose normalised turns equal a train conversation's (ids sorted)."""
    by_key: dict[str, str] = {}
    for cid in sorted(train):
        by_key.setdefault(leak_key(train[cid]), cid)
    leaks = []
    for cid in sorted(eval):
        hit = by_key.get(leak_key(eval[cid]))
        if hit is not None:
            leaks.append(Leak(cid, hit, 1.0, "exact"))
    return leaks


def _field(item: Any, *names: str) -> Any:
    for n in names:
        if isinstance(item, Mapping) and n in item:
            return item[n]
        if not isinstance(item, Mapping) and hasattr(item, n):
            return getattr(item, n)
    return None


def near_overlap(
    contamination: Callable[..., Any],
    train: Mapping[str, Conversation],
    eval: Mapping[str, Conversation],
    config: Any = None,
) -> list[Leak]:
    """Run dedup's `contamination(train, eval, config)` and name each pair by conversation id.

    The conversations are passed as lists in id order with `metadata["conversation_id"]` set, since
    a revised conversation's content id is not its store id. A result item may be a (eval, train,
    score) tuple or an object/dict with eval/train ids (or indices, or conversations) and a score.
    """
    train_ids, eval_ids = sorted(train), sorted(eval)
    as_list = lambda d, ids: [  # noqa: E731
        Conversation(d[i].messages, d[i].tools, {**d[i].metadata, "conversation_id": i}) for i in ids
    ]
    train_list, eval_list = as_list(train, train_ids), as_list(eval, eval_ids)
    by_content = {c.id: i for c, i in zip(train_list, train_ids, strict=True)}
    by_content.update({c.id: i for c, i in zip(eval_list, eval_ids, strict=True)})

    def resolve(x: Any, ids: list[str]) -> str | None:
        if isinstance(x, Conversation):
            return x.metadata.get("conversation_id") or by_content.get(x.id)
        if isinstance(x, int) and not isinstance(x, bool):
            return ids[x] if 0 <= x < len(ids) else None
        if isinstance(x, str):
            return x if x in train or x in eval else by_content.get(x)
        return None

    result = contamination(train_list, eval_list, config)
    if isinstance(result, Mapping) and not {"eval", "train"} & set(result):
        result = result.get("pairs", result.get("leaks", []))
    leaks: dict[tuple[str, str], Leak] = {}
    for item in result or ():
        if isinstance(item, tuple | list):
            a, b, score = [*item, None, None, None][:3]
        else:
            a = _field(item, "eval_id", "eval", "eval_index")
            b = _field(item, "train_id", "train", "train_index")
            score = _field(item, "similarity", "jaccard", "score")
        e, t = resolve(a, eval_ids), resolve(b, train_ids)
        if e in train and t in eval:  # given the other way round
            e, t = t, e
        if e is None or t is None or e not in eval or t not in train:
            raise SplitError(f"dedup's contamination check returned a pair Sift cannot place: {item!r}")
        sim = float(score) if isinstance(score, int | float) else 1.0
        exact = not isinstance(item, tuple | list) and _field(item, "exact") is True
        leaks.setdefault((e, t), Leak(e, t, round(sim, 4), "exact" if exact else "near_duplicate"))
    return sorted(leaks.values(), key=lambda x: (x.eval_id, x.train_id))
