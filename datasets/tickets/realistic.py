"""Realistic (systematic) noise."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from .clean import labels_json, parse_labels
from .vocab import CATEGORIES, LABEL_KEYS, PRIORITIES, PRODUCT_AREAS

# --------------------------------------------------------------------------
# Realistic (systematic) noise: what annotators and macros really do. Random
# wrong labels average away in a model trained on thousands of rows; these do
# not, because each is tied to something in the ticket (its category, its
# product area, the queue an annotator works).
# --------------------------------------------------------------------------

REALISTIC_KINDS = ("label_confusion", "biased_annotator", "templated_answer")
REALISTIC_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        # One category pair: this share of the first category's rows carries the second; the rows are
        # those of whole product areas (annotators confuse the pair on particular topics).
        "confusion": ("performance", "outage"),
        "confusion_rate": 0.25,
        # One of `annotators` works mostly `biased_queue`'s tickets and shifts `biased_field` one level
        # up (priority: low → medium → high → urgent) on every row of theirs it can.
        "annotators": 5,
        "biased_field": "priority",
        "biased_queue": "storage",
        "biased_queue_share": 0.7,
        # One macro pasted as the whole answer (with its own label line) on this share of the pool,
        # taken from tickets of `templated_category`.
        "templated_rate": 0.04,
        "templated_category": "billing",
        "templated_labels": {"category": "billing", "priority": "low", "product_area": "console"},
    }
)
TEMPLATED_REPLY = (
    "Thanks for contacting QuillDB support! We have received your request and a member of our team "
    "will get back to you within two business days. In the meantime, our documentation at "
    "docs.quilldb.example answers most questions."
)
_LEVELS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"priority": PRIORITIES, "category": CATEGORIES, "product_area": PRODUCT_AREAS}
)


def _resolve_realistic(overrides: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(REALISTIC_DEFAULTS)
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"unknown realistic-noise setting {key!r}; expected one of {sorted(cfg)}")
        cfg[key] = value
    a, b = cfg["confusion"]
    if a not in CATEGORIES or b not in CATEGORIES or a == b:
        raise ValueError(f"confusion must be two different categories of {CATEGORIES}, got {cfg['confusion']!r}")
    if cfg["biased_field"] not in LABEL_KEYS or cfg["biased_queue"] not in PRODUCT_AREAS:
        raise ValueError("biased_field must be a label key and biased_queue a product area")
    for key in ("confusion_rate", "biased_queue_share", "templated_rate"):
        if not 0.0 <= float(cfg[key]) <= 1.0:
            raise ValueError(f"{key} must be in [0, 1], got {cfg[key]}")
    if int(cfg["annotators"]) < 2:
        raise ValueError("annotators must be at least 2 (one of them is the biased one)")
    cfg["confusion"] = [a, b]
    cfg["templated_labels"] = dict(cfg["templated_labels"])
    return cfg


def add_realistic_noise(
    rows: list[dict[str, Any]], problems: Sequence[Mapping[str, Any]], cfg: Mapping[str, Any], rng: random.Random
) -> tuple[list[dict[str, Any]], list[str]]:
    """Plant the realistic kinds into ``rows`` (OpenAI-style, changed in place); return the new
    problems and each row's annotator.

    Only rows without a problem that no duplicate was copied from are touched (a copy must stay a
    copy of its source), one kind per row, in this order:

    - ``templated_answer``: the assistant turn becomes ``TEMPLATED_REPLY`` plus the macro's label
      line, on ``round(templated_rate * n)`` rows drawn from ``templated_category`` tickets first;
    - ``label_confusion``: ``confusion[0]`` → ``confusion[1]`` on ``confusion_rate`` of the rows
      labelled with the first category, whole product areas at a time (seeded order; the last in part);
    - ``biased_annotator``: every row gets ``metadata.annotator`` ``a1``..``aN``; the biased one
      (``aN``) takes ``biased_queue_share`` of ``biased_queue`` tickets plus its share of the rest,
      and shifts ``biased_field`` one level up on each of its untouched rows where it can.

    Each problem: ``row``, ``kind``, ``fields`` (the label keys that differ), ``true_labels``,
    ``given_labels``, and ``annotator`` for the biased one.
    """
    used = {int(p["row"]) for p in problems}
    for p in problems:
        for key in ("duplicate_of", "source"):
            if isinstance(p.get(key), int):
                used.add(int(p[key]))
    truth: dict[int, dict[str, str]] = {}
    for i, row in enumerate(rows):
        if i in used:
            continue
        labels = parse_labels(next((t["content"] for t in row["messages"] if t["role"] == "assistant"), ""))
        if labels is not None:
            truth[i] = labels
    free = sorted(truth)
    out: list[dict[str, Any]] = []

    def relabel(i: int, kind: str, given: dict[str, str], answer: str | None = None, **extra: Any) -> None:
        turn = next(t for t in rows[i]["messages"] if t["role"] == "assistant")
        reply = turn["content"].rsplit("\n", 1)[0] if answer is None else answer
        turn["content"] = f"{reply}\n{labels_json(given)}"
        fields = [k for k in LABEL_KEYS if given[k] != truth[i][k]]
        out.append({"row": i, "kind": kind, "fields": fields, "true_labels": truth[i], "given_labels": given, **extra})
        taken.add(i)

    taken: set[int] = set()
    n_spam = round(float(cfg["templated_rate"]) * len(rows))
    pref = [i for i in free if truth[i]["category"] == cfg["templated_category"]]
    rest = [i for i in free if truth[i]["category"] != cfg["templated_category"]]
    rng.shuffle(pref)
    rng.shuffle(rest)
    for i in sorted((pref + rest)[:n_spam]):
        relabel(i, "templated_answer", dict(cfg["templated_labels"]), TEMPLATED_REPLY)

    a, b = cfg["confusion"]
    pair = [i for i in free if i not in taken and truth[i]["category"] == a]
    # The rate is of every row labelled `a` in the pool (other problems and copies included).
    labelled_a = 0
    for row in rows:
        given = parse_labels(next((t["content"] for t in row["messages"] if t["role"] == "assistant"), ""))
        labelled_a += bool(given and given["category"] == a)
    want = min(len(pair), round(float(cfg["confusion_rate"]) * labelled_a))
    areas = list(PRODUCT_AREAS)
    rng.shuffle(areas)
    ordered = [i for area in areas for i in pair if truth[i]["product_area"] == area]
    for i in sorted(ordered[:want]):
        relabel(i, "label_confusion", {**truth[i], "category": b})

    n_ann = int(cfg["annotators"])
    biased = f"a{n_ann}"
    annotators = []
    for i in range(len(rows)):
        in_queue = i in truth and truth[i]["product_area"] == cfg["biased_queue"]
        if in_queue and rng.random() < float(cfg["biased_queue_share"]):
            annotators.append(biased)
        else:
            annotators.append(f"a{rng.randint(1, n_ann)}")
    field = cfg["biased_field"]
    levels = _LEVELS[field]
    for i in free:
        if i in taken or annotators[i] != biased:
            continue
        k = levels.index(truth[i][field])
        if k + 1 < len(levels):
            relabel(i, "biased_annotator", {**truth[i], field: levels[k + 1]}, annotator=biased)
    out.sort(key=lambda p: p["row"])
    return out, annotators
