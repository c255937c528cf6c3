"""The noisy training pool: planted problems of known kinds, each recorded in a ground truth."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from itertools import islice
from types import MappingProxyType
from typing import Any

from .clean import _gold_items, _iter_items, _turns, _typos, assistant_text, labels_json
from .realistic import REALISTIC_KINDS, _resolve_realistic, add_realistic_noise
from .vocab import CATEGORIES, LABEL_KEYS, PRIORITIES, PRODUCT_AREAS

NOISE_KINDS = (
    "exact_duplicate",
    "near_duplicate",
    "wrong_label",
    "pii",
    "broken_structure",
    "overlong",
    "eval_leakage",
)
DEFAULT_RATES: Mapping[str, float] = MappingProxyType(
    {
        "exact_duplicate": 0.05,
        "near_duplicate": 0.05,
        "wrong_label": 0.08,
        "pii": 0.05,
        "broken_structure": 0.02,
        "overlong": 0.01,
        "eval_leakage": 0.03,
    }
)
BROKEN_SUBKINDS = ("assistant_first", "double_user", "empty_answer")
NEAR_DUP_MIN_JACCARD = 0.8
OVERLONG_MIN_CHARS = 12_000


# --------------------------------------------------------------------------
# Noise injection
# --------------------------------------------------------------------------

_FIRST_NAMES = (
    "Priya",
    "Marcus",
    "Elena",
    "Tomasz",
    "Aisha",
    "Kenji",
    "Sofia",
    "Daniel",
    "Fatima",
    "Liam",
    "Chloe",
    "Rafael",
    "Ingrid",
    "Omar",
    "Hannah",
    "Mateo",
)
_LAST_NAMES = (
    "Raman",
    "Whitfield",
    "Kowalczyk",
    "Okafor",
    "Lindqvist",
    "Nakamura",
    "Delgado",
    "Brennan",
    "Haddad",
    "Morrison",
    "Petrova",
    "Castillo",
    "Adeyemi",
    "Fischer",
)
_STREETS = ("Elm", "Oak", "Maple", "Cedar", "Pine", "Birch", "Willow", "Lakeview")
_STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Drive")
_CITIES = ("Springfield", "Riverton", "Fairview", "Greenville", "Madison", "Franklin", "Georgetown")
_FOLLOW_UPS = (
    "Any update on this?",
    "Also, forgot to mention: this started after our last deploy.",
    "Sorry, one more thing: it also happens on our staging cluster.",
    "Hello? Is anyone looking at this?",
)
_FILLERS = ("really", "actually", "just", "also", "basically")
_DROPPABLE = frozenset({"just", "really", "the", "so", "also", "very", "now", "our"})
_SYNONYMS: Mapping[str, str] = MappingProxyType(
    {
        "can't": "cannot",
        "don't": "do not",
        "It's": "It is",
        "We're": "We are",
        "Thanks!": "Thank you!",
        "very": "really",
        "Please": "Pls",
        "help": "assistance",
        "slow": "sluggish",
        "fails": "breaks",
        "every": "each",
    }
)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    words = _words(text)
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def word_shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of the lowercase word ``n``-gram sets of two texts."""
    sa, sb = _shingles(a, n), _shingles(b, n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _near_edit(text: str, rng: random.Random) -> tuple[str, float] | None:
    """A small word-level edit with 5-gram Jaccard >= 0.8, or None if none found."""
    for _ in range(20):
        words = text.split(" ")
        for _ in range(rng.choice((1, 1, 2))):
            op = rng.randrange(4)
            i = rng.randrange(len(words))
            if op == 0:
                words.insert(i, rng.choice(_FILLERS))
            elif op == 1 and words[i] in _DROPPABLE:
                del words[i]
            elif op == 2 and words[i] in _SYNONYMS:
                words[i] = _SYNONYMS[words[i]]
            else:
                words[i] = _typos(words[i], rng, 1)
        edited = " ".join(words)
        if _words(edited) == _words(text):
            continue
        score = word_shingle_jaccard(text, edited)
        if score >= NEAR_DUP_MIN_JACCARD:
            return edited, score
    return None


def _mislabel(labels: Mapping[str, str], rng: random.Random) -> tuple[dict[str, str], str]:
    field = rng.choice(LABEL_KEYS)
    choices = {
        "category": CATEGORIES,
        "priority": PRIORITIES,
        "product_area": PRODUCT_AREAS,
    }[field]
    wrong = dict(labels)
    wrong[field] = rng.choice([c for c in choices if c != labels[field]])
    return wrong, field


def _fake_pii(rng: random.Random) -> tuple[str, str, list[tuple[str, str]]]:
    """A sentence with 1-2 fake PII strings: (sentence, where, [(type, s)])."""
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    name = f"{first} {last}"
    email = f"{first.lower()}.{last.lower()}@example.{rng.choice(('com', 'org', 'net'))}"
    area_code = rng.choice(("202", "312", "415", "617", "206"))
    phone = rng.choice(
        (
            f"(555) 01{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d}",
            f"+1-{area_code}-555-01{rng.randint(0, 99):02d}",
            f"({area_code}) 555-01{rng.randint(0, 99):02d}",
        )
    )
    address = f"{rng.randint(2, 980)} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}, {rng.choice(_CITIES)}"
    kind = rng.randrange(5)
    if kind == 0:
        return f"This is {name} from the data team.", "prepend", [("name", name)]
    if kind == 1:
        return (
            f"You can reach me at {email} or {phone}.",
            "append",
            [("email", email), ("phone", phone)],
        )
    if kind == 2:
        return f"Please send the invoice to {address}.", "append", [("address", address)]
    if kind == 3:
        return (
            f"My colleague {name} ({email}) set up the cluster.",
            "append",
            [("name", name), ("email", email)],
        )
    return f"Call me at {phone} if that's easier.", "append", [("phone", phone)]


def _plant_pii(text: str, rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    planted: list[tuple[str, str]] = []
    for _ in range(rng.choice((1, 1, 2))):
        sentence, where, pieces = _fake_pii(rng)
        text = f"{sentence} {text}" if where == "prepend" else f"{text}\n{sentence}"
        planted.extend(p for p in pieces if p not in planted)
    return text, planted


def _paste_log(text: str, rng: random.Random, min_chars: int) -> str:
    """Append a pasted server log so the row exceeds ``min_chars`` characters."""
    target = min_chars + rng.randint(200, 3000)
    components = ("qdb.replication", "qdb.storage", "qdb.sql", "qdb.backup", "qdb.kv")
    lines: list[str] = []
    size = len(text)
    while size < target:
        n, m, k = rng.randint(1, 999_999), rng.randint(1, 9999), rng.randint(1, 24)
        msg = rng.choice(
            (
                f"applied batch seq={n} lag_ms={m}",
                f"compaction L{k % 6} -> L{k % 6 + 1} size={m}MiB",
                f"slow query fingerprint={rng.getrandbits(48):012x} elapsed_ms={m}",
                f"lease transfer range r{n} to n{k}",
                f"heartbeat timeout peer=n{k} after {m}ms",
                f"retrying rpc attempt={k} err=deadline exceeded",
            )
        )
        line = (
            f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
            f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z "
            f"{rng.choice('IWE')} node=n{k} {rng.choice(components)}: {msg}"
        )
        lines.append(line)
        size += len(line) + 1
    log = "\n".join(lines)
    return f"{text}\n\nHere is the full log from the node:\n```\n{log}\n```"


def _break(turns: list[dict[str, Any]], subkind: str, rng: random.Random) -> list[dict[str, Any]]:
    head = [t for t in turns if t["role"] == "system"]
    user = next(t for t in turns if t["role"] == "user")
    answer = next(t for t in turns if t["role"] == "assistant")
    if subkind == "assistant_first":
        return [*head, answer, user]
    if subkind == "double_user":
        follow = {"role": "user", "content": rng.choice(_FOLLOW_UPS)}
        return [*head, user, follow, answer]
    return [*head, user, {"role": "assistant", "content": ""}]


def _row_chars(turns: Sequence[Mapping[str, Any]]) -> int:
    return sum(len(t.get("content") or "") for t in turns)


def _inject(
    base: list[dict[str, Any]],
    counts: Mapping[str, int],
    rng: random.Random,
    *,
    gold: Sequence[Mapping[str, Any]] = (),
    system: bool = True,
    extra: Sequence[tuple[list[dict[str, Any]], dict[str, Any]]] = (),
) -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Turn clean ``base`` items into shuffled rows with planted problems.

    ``counts`` maps each of ``wrong_label``, ``pii``, ``overlong``, the
    ``BROKEN_SUBKINDS``, ``exact_duplicate``, ``near_duplicate`` and
    ``eval_leakage`` to how many rows get it. The first group mutates distinct
    base rows in place; duplicates and leaks are added rows, copied from
    untouched base rows or from ``gold``. ``extra`` rows are shuffled in as-is.
    Returns ``(turns per row, problems)``; each problem's ``row`` (and any
    ``duplicate_of``/``source``) is a final row index.
    """
    mutations = [
        kind for kind in ("wrong_label", "pii", "overlong", *BROKEN_SUBKINDS) for _ in range(counts.get(kind, 0))
    ]
    if len(mutations) >= len(base):
        raise ValueError("noise rates leave no clean rows to copy from")
    order = list(range(len(base)))
    rng.shuffle(order)
    clean = sorted(order[len(mutations) :])

    entries: list[tuple[list[dict[str, Any]], dict[str, Any] | None]] = [
        (_turns(it["ticket"], assistant_text(it), system), None) for it in base
    ]
    for index, kind in zip(order, mutations, strict=False):
        item = base[index]
        turns = entries[index][0]
        problem: dict[str, Any]
        if kind == "wrong_label":
            wrong, field = _mislabel(item["labels"], rng)
            answer = f"{item['reply']}\n{labels_json(wrong)}"
            turns = _turns(item["ticket"], answer, system)
            problem = {
                "kind": "wrong_label",
                "field": field,
                "true_labels": dict(item["labels"]),
                "given_labels": wrong,
            }
        elif kind == "pii":
            ticket, planted = _plant_pii(item["ticket"], rng)
            turns = _turns(ticket, assistant_text(item), system)
            problem = {
                "kind": "pii",
                "strings": [s for _, s in planted],
                "types": [t for t, _ in planted],
            }
        elif kind == "overlong":
            ticket = _paste_log(item["ticket"], rng, OVERLONG_MIN_CHARS)
            turns = _turns(ticket, assistant_text(item), system)
            problem = {"kind": "overlong", "chars": _row_chars(turns)}
        else:
            turns = _break(turns, kind, rng)
            problem = {"kind": "broken_structure", "subkind": kind}
        entries[index] = (turns, problem)

    for _ in range(counts.get("exact_duplicate", 0)):
        src = rng.choice(clean)
        copy = [dict(t) for t in entries[src][0]]
        entries.append((copy, {"kind": "exact_duplicate", "duplicate_of": src}))

    # Short tickets cannot take a word edit and stay above the Jaccard bar.
    long_enough = [i for i in clean if len(_words(base[i]["ticket"])) >= 30]
    made = 0
    while made < counts.get("near_duplicate", 0):
        src = rng.choice(long_enough or clean)
        item = base[src]
        edit = _near_edit(item["ticket"], rng)
        if edit is None:
            continue
        ticket, score = edit
        problem = {
            "kind": "near_duplicate",
            "source": src,
            "jaccard": round(score, 4),
            "conflicting_labels": made % 3 == 2,
        }
        answer = assistant_text(item)
        if problem["conflicting_labels"]:
            wrong, field = _mislabel(item["labels"], rng)
            answer = f"{item['reply']}\n{labels_json(wrong)}"
            problem.update(field=field, true_labels=dict(item["labels"]), given_labels=wrong)
        entries.append((_turns(ticket, answer, system), problem))
        made += 1

    n_leak = counts.get("eval_leakage", 0)
    if n_leak and not gold:
        raise ValueError("eval_leakage needs gold items")
    picks = (
        rng.sample(range(len(gold)), n_leak)
        if n_leak <= len(gold)
        else [rng.randrange(len(gold)) for _ in range(n_leak)]
    )
    for k, gold_index in enumerate(picks):
        gold_item = gold[gold_index]
        edit = _near_edit(gold_item["ticket"], rng) if k % 2 else None
        ticket, score = edit if edit else (gold_item["ticket"], 1.0)
        entries.append(
            (
                _turns(ticket, assistant_text(gold_item), system),
                {
                    "kind": "eval_leakage",
                    "gold_index": gold_index,
                    "gold_id": gold_item["id"],
                    "exact": edit is None,
                    "jaccard": round(score, 4),
                },
            )
        )

    entries.extend((turns, dict(extra_problem)) for turns, extra_problem in extra)
    perm = list(range(len(entries)))
    rng.shuffle(perm)
    final_pos = {old: new for new, old in enumerate(perm)}
    rows: list[list[dict[str, Any]]] = []
    problems: list[dict[str, Any]] = []
    for new, old in enumerate(perm):
        turns, found = entries[old]
        rows.append(turns)
        if found is not None:
            for key in ("duplicate_of", "source"):
                if isinstance(found.get(key), int):
                    found[key] = final_pos[found[key]]
            problems.append({"row": new, **found})

    # Copies are indistinguishable from their source, so call the earliest one
    # the original: a "keep first" dedup pass then matches the ground truth.
    groups: dict[int, list[dict[str, Any]]] = {}
    for problem in problems:
        if problem["kind"] == "exact_duplicate" and isinstance(problem["duplicate_of"], int):
            groups.setdefault(problem["duplicate_of"], []).append(problem)
    for source, copies in groups.items():
        members = sorted([source, *(p["row"] for p in copies)])
        for problem, row in zip(copies, members[1:], strict=True):
            problem.update(row=row, duplicate_of=members[0])
    problems.sort(key=lambda p: p["row"])
    return rows, problems


def _resolve_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    merged = dict(DEFAULT_RATES)
    for kind, rate in (rates or {}).items():
        if kind not in merged:
            raise ValueError(f"unknown noise kind {kind!r}; expected {NOISE_KINDS}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate for {kind!r} must be in [0, 1], got {rate}")
        merged[kind] = float(rate)
    if sum(merged.values()) >= 1.0:
        raise ValueError("noise rates must sum to less than 1")
    return merged


def generate_noisy(
    n: int,
    seed: int = 0,
    rates: Mapping[str, float] | None = None,
    *,
    eval_size: int | None = None,
    realistic: Mapping[str, Any] | bool | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build a noisy training pool of ``n`` OpenAI-style rows plus ground truth.

    Each row is ``{"messages": [system, user, assistant], "metadata":
    {"sample_id": str}}``. For every kind in ``NOISE_KINDS``, ``round(rate * n)``
    rows carry that problem (``rates`` overrides ``DEFAULT_RATES`` per kind);
    a row has at most one problem.

    Ground truth: ``{"seed", "n", "rates", "counts", "problems", "by_kind",
    "pii_strings", "gold_eval"}``. ``problems`` is sorted by ``row`` (an index
    into the returned rows); besides ``row`` and ``kind`` each carries:

    - ``exact_duplicate``: ``duplicate_of`` (earlier row with equal messages);
    - ``near_duplicate``: ``source`` row, ``jaccard`` (word 5-gram Jaccard of
      the user texts, >= 0.8), ``conflicting_labels``, and when conflicting
      ``field``, ``true_labels``, ``given_labels``;
    - ``wrong_label``: ``field``, ``true_labels``, ``given_labels``;
    - ``pii``: ``strings`` planted in the user turn and their ``types``
      (name, email, phone, address);
    - ``broken_structure``: ``subkind`` in ``BROKEN_SUBKINDS``;
    - ``overlong``: ``chars`` (over ``OVERLONG_MIN_CHARS``);
    - ``eval_leakage``: ``gold_index``, ``gold_id``, ``exact``, ``jaccard``.

    ``gold_eval`` holds ``eval_size`` clean items (default ``max(50, n // 10)``)
    from a disjoint seed stream; a gold ticket appears verbatim in the pool only
    in ``eval_leakage`` rows with ``exact`` true.

    ``realistic`` (True for ``REALISTIC_DEFAULTS``, or a mapping overriding some of
    them) adds the systematic noise real teams have, on rows that carry no other
    problem and are no duplicate's source (see ``add_realistic_noise``); without
    it the output is exactly what it always was.
    """
    merged = _resolve_rates(rates)
    counts = {kind: round(merged[kind] * n) for kind in NOISE_KINDS}
    gold = _gold_items(eval_size if eval_size is not None else max(50, n // 10), seed)
    if counts["eval_leakage"] and not gold:
        raise ValueError("eval_leakage needs eval_size > 0")

    added = counts["exact_duplicate"] + counts["near_duplicate"]
    added += counts["eval_leakage"]
    gold_tickets = frozenset(item["ticket"] for item in gold)
    stream = _iter_items(random.Random(seed), f"t{seed}", exclude=gold_tickets)
    base = list(islice(stream, n - added))

    inject_counts = dict(counts)
    for i in range(counts["broken_structure"]):
        sub = BROKEN_SUBKINDS[i % len(BROKEN_SUBKINDS)]
        inject_counts[sub] = inject_counts.get(sub, 0) + 1
    turns_rows, problems = _inject(base, inject_counts, random.Random(f"noise:{seed}"), gold=gold)

    rows: list[dict[str, Any]] = [
        {"messages": turns, "metadata": {"sample_id": f"pool{seed}-{i:06d}"}} for i, turns in enumerate(turns_rows)
    ]
    kinds: tuple[str, ...] = NOISE_KINDS
    realistic_cfg: dict[str, Any] | None = None
    if realistic:
        realistic_cfg = _resolve_realistic(realistic if isinstance(realistic, Mapping) else {})
        added_problems, annotators = add_realistic_noise(rows, problems, realistic_cfg, random.Random(f"real:{seed}"))
        for row, annotator in zip(rows, annotators, strict=True):
            row["metadata"]["annotator"] = annotator
        problems = sorted([*problems, *added_problems], key=lambda p: p["row"])
        kinds = (*NOISE_KINDS, *REALISTIC_KINDS)
        for kind in REALISTIC_KINDS:
            counts[kind] = sum(1 for p in added_problems if p["kind"] == kind)
    by_kind: dict[str, list[int]] = {kind: [] for kind in kinds}
    pii_strings: list[str] = []
    for problem in problems:
        by_kind[problem["kind"]].append(problem["row"])
        pii_strings.extend(problem.get("strings", ()))
    return rows, {
        "seed": seed,
        "n": n,
        "rates": merged,
        "counts": counts,
        "problems": problems,
        "by_kind": by_kind,
        "pii_strings": list(dict.fromkeys(pii_strings)),
        "gold_eval": gold,
        **({"realistic": realistic_cfg} if realistic_cfg is not None else {}),
    }
