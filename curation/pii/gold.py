"""Gold data and scoring: load labelled sets, score predicted spans against gold spans (precision,
recall, F2 per entity and binary). Evaluation code, used by `sift pii-eval` and bench/bench_pii.py."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from curation.pii.config import PiiError
from curation.pii.spans import Span

# presidio-research (synth_dataset_v2) and NeMo-Curator inline tags → Sift entities. Labels mapped
# to None are out of scope: Sift does not look for them, so they count neither as misses nor, when
# a prediction falls on one, as false positives.
LABEL_MAP: dict[str, str | None] = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "STREET_ADDRESS",
    "ADDRESS": "STREET_ADDRESS",
    "ZIP_CODE": "STREET_ADDRESS",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "CREDIT_CARD": "CREDIT_CARD",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "DOMAIN_NAME": "URL",
    "URL": "URL",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "DATE_TIME": "DATE_TIME",
    "ORGANIZATION": None,
    "TITLE": None,
    "AGE": None,
    "NRP": None,
    "US_DRIVER_LICENSE": None,
    # NeMo-Curator tags
    "name": "PERSON",
    "address": "STREET_ADDRESS",
    "email": "EMAIL_ADDRESS",
    "phone_number": "PHONE_NUMBER",
    "ssn": "US_SSN",
    "credit_card_number": "CREDIT_CARD",
    "ip_address": "IP_ADDRESS",
    "birth_date": "DATE_TIME",
}
MIN_OVERLAP = 0.5


@dataclass(frozen=True, slots=True)
class GoldSpan:
    start: int
    end: int
    label: str


def _coverage(start: int, end: int, others: Iterable[tuple[int, int]]) -> float:
    """The share of [start, end) covered by the union of `others`."""
    if end <= start:
        return 0.0
    covered = 0
    pos = start
    for s, e in sorted(others):
        s, e = max(s, pos), min(e, end)
        if e > s:
            covered += e - s
            pos = e
    return covered / (end - start)


def _prf(tp_p: int, n_pred: int, tp_g: int, n_gold: int) -> dict[str, float]:
    p = tp_p / n_pred if n_pred else 0.0
    r = tp_g / n_gold if n_gold else 0.0
    f2 = 5 * p * r / (4 * p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f2": round(f2, 4)}


def score_spans(
    gold: Sequence[Sequence[GoldSpan]],
    predicted: Sequence[Sequence[Span]],
    entities: Sequence[str],
    label_map: dict[str, str | None] | None = None,
    min_overlap: float = MIN_OVERLAP,
) -> dict[str, Any]:
    """Precision, recall and F2 per entity and binary (PII vs not).

    A gold span is found when predictions (of its entity, or of any entity for the binary score)
    cover at least `min_overlap` of its characters; a prediction is right when gold spans cover at
    least `min_overlap` of it. Several predictions may share one gold span and the other way round,
    so an address labelled as three fragments and found as one span counts as found. A gold label
    that maps to None, or to an entity not in `entities`, is out of scope: it is not a miss, and a
    prediction that falls on it is neither right nor wrong (counted in `ignored_predictions`).
    Texts with no gold span at all are clean: `clean_finding_rate` is the share of them with any
    finding, `clean_person_findings` the PERSON findings in them.
    """
    label_map = LABEL_MAP if label_map is None else label_map
    in_scope = set(entities)
    per: dict[str, list[int]] = {}  # entity -> [tp_pred, n_pred, tp_gold, n_gold]
    binary = [0, 0, 0, 0]
    ignored = 0
    negatives = [0, 0, 0]  # texts without gold spans, those with any finding, PERSON findings in them
    unmapped: set[str] = set()
    for golds, preds in zip(gold, predicted, strict=True):
        inside: list[tuple[int, int, str]] = []
        outside: list[tuple[int, int]] = []
        for g in golds:
            if g.label not in label_map:
                unmapped.add(g.label)
            ent = label_map.get(g.label)
            if ent is not None and ent in in_scope:
                inside.append((g.start, g.end, ent))
            else:
                outside.append((g.start, g.end))
        if not golds:
            negatives[0] += 1
            negatives[1] += bool(preds)
            negatives[2] += sum(1 for p in preds if p.entity == "PERSON")
        for s, e, ent in inside:
            c = per.setdefault(ent, [0, 0, 0, 0])
            c[3] += 1
            binary[3] += 1
            if _coverage(s, e, [(p.start, p.end) for p in preds if p.entity == ent]) >= min_overlap:
                c[2] += 1
            if _coverage(s, e, [(p.start, p.end) for p in preds]) >= min_overlap:
                binary[2] += 1
        for p in preds:
            c = per.setdefault(p.entity, [0, 0, 0, 0])
            right_any = _coverage(p.start, p.end, [(s, e) for s, e, _ in inside]) >= min_overlap
            right_type = _coverage(p.start, p.end, [(s, e) for s, e, x in inside if x == p.entity]) >= min_overlap
            on_outside = _coverage(p.start, p.end, outside) >= min_overlap
            if right_any:
                binary[0] += 1
                binary[1] += 1
            elif on_outside:
                ignored += 1
            else:
                binary[1] += 1
            if right_type:
                c[0] += 1
                c[1] += 1
            elif not on_outside:
                c[1] += 1
    if unmapped:
        raise PiiError(f"no mapping for gold label(s) {', '.join(sorted(unmapped))}")
    return {
        "overall": _prf(*binary),
        "entities": {e: {**_prf(*per[e]), "support": per[e][3]} for e in sorted(per)},
        "ignored_predictions": ignored,
        "clean_texts": negatives[0],
        "clean_texts_with_findings": negatives[1],
        "clean_finding_rate": round(negatives[1] / negatives[0], 4) if negatives[0] else None,
        "clean_person_findings": negatives[2],
    }


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def score_tokens(
    texts: Sequence[str],
    gold: Sequence[Sequence[GoldSpan]],
    predicted: Sequence[Sequence[Span]],
    entities: Sequence[str],
    label_map: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Binary (PII vs not) precision, recall and F2 per token, the way presidio-research's evaluator
    counts its "PII" figures: each token (a run of word characters, or one punctuation character)
    is gold PII when an in-scope gold span overlaps it and predicted PII when any predicted span
    does, whatever the entity. A city inside a predicted address is found here, where the span
    score (overlap >= 0.5 of the gold span, `score_spans`) also finds it but an address span
    stretched over a city and a country counts as one right prediction however many tokens it
    covers. Tokens of out-of-scope gold spans (ORGANIZATION, TITLE...) that a prediction covers are
    ignored, as `score_spans` ignores such predictions."""
    label_map = LABEL_MAP if label_map is None else label_map
    in_scope = set(entities)
    tp = n_pred = n_gold = ignored = 0
    for text, golds, preds in zip(texts, gold, predicted, strict=True):
        inside = [(g.start, g.end) for g in golds if label_map.get(g.label) in in_scope]
        outside = [(g.start, g.end) for g in golds if label_map.get(g.label) not in in_scope]
        pred = [(p.start, p.end) for p in preds]
        for m in _TOKEN_RE.finditer(text):
            a, b = m.span()
            g = any(s < b and a < e for s, e in inside)
            p = any(s < b and a < e for s, e in pred)
            if p and not g and any(s < b and a < e for s, e in outside):
                ignored += 1
                continue
            tp += g and p
            n_pred += p
            n_gold += g
    return {
        **_prf(tp, n_pred, tp, n_gold),
        "gold_tokens": n_gold,
        "predicted_tokens": n_pred,
        "ignored_tokens": ignored,
    }


def load_presidio_research(path: str | os.PathLike[str]) -> tuple[list[str], list[list[GoldSpan]]]:
    """Texts and gold spans of a presidio-research JSON file (`full_text`, `spans`)."""
    import json

    try:
        rows = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115
    except (OSError, ValueError) as e:
        raise PiiError(f"cannot read {path}: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "full_text" in r for r in rows):
        raise PiiError(f"{path}: expected a JSON list of objects with full_text and spans")
    texts, gold = [], []
    for r in rows:
        texts.append(r["full_text"])
        gold.append([GoldSpan(s["start_position"], s["end_position"], s["entity_type"]) for s in r.get("spans") or ()])
    return texts, gold


_TAG_RE = re.compile(r"<(?P<tag>[a-z_]+)>(?P<body>.*?)</(?P=tag)>", re.DOTALL)


def parse_inline_tags(tagged: str) -> tuple[str, list[GoldSpan]]:
    """`My SSN is <ssn>284-89-3485</ssn>.` → the plain text and its gold spans (NeMo-Curator files)."""
    out: list[str] = []
    spans: list[GoldSpan] = []
    pos = 0
    n = 0
    for m in _TAG_RE.finditer(tagged):
        out.append(tagged[pos : m.start()])
        n += m.start() - pos
        body = m.group("body")
        spans.append(GoldSpan(n, n + len(body), m.group("tag")))
        out.append(body)
        n += len(body)
        pos = m.end()
    out.append(tagged[pos:])
    return "".join(out), spans


VANILLA_THRESHOLD = 0.4


def predict_vanilla(vanilla: Any, texts: Sequence[str], entities: Sequence[str]) -> list[list[Span]]:
    """Vanilla Presidio's spans (`build_vanilla_analyzer`: predefined recognizers, the same spaCy
    model), one `analyze()` per text, at or above VANILLA_THRESHOLD, nested spans resolved the way
    Sift resolves its own: the anchor of every comparison."""
    from curation.pii.spans import resolve_overlaps

    supported = set(vanilla.get_supported_entities("en"))
    ents = [e for e in entities if e in supported]
    out = []
    for t in texts:
        rs = vanilla.analyze(text=t, language="en", entities=ents, score_threshold=VANILLA_THRESHOLD)
        out.append(resolve_overlaps(Span(r.start, r.end, r.entity_type, float(r.score), "vanilla") for r in rs))
    return out
