"""Label audit: find answers whose structured labels disagree with what the rest of the data says.

Many fine-tuning sets end each assistant answer in a small JSON object of labels (a ticket's
category and priority, an intent, a sentiment). A wrong label teaches the model the wrong mapping,
and no structural check can see it. This stage looks for them the way confident learning does
(Northcutt et al., "Confident Learning", JAIR 2021):

1. For each label field (auto-detected: string fields of the answer's trailing JSON object that
   most answers carry, with few distinct values), a multinomial naive Bayes classifier reads the
   user turns (word unigrams and bigrams) and predicts the field, *out of fold*: every row is
   scored by a model that never saw it (k folds, seeded).
2. Per class j, a threshold t_j: the mean predicted probability of j over rows labelled j (how sure
   the classifier is, on average, when the label is right).
3. A row labelled i is suspect when some other class j has p_j >= t_j while p_i < t_i: the data
   points elsewhere with the confidence a correct label usually gets. The suggestion is that j.

The classifier is small and dependency-free (numpy + scipy.sparse); it needs classes with a few
examples each, so fields with a class below `min_class_count` rows are skipped, and so are
datasets under `min_rows`. A suspect is a question for a reviewer, not a verdict: flags are
warnings by default and carry the given label, the suggestion and both probabilities.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.errors import StageError
from curation.records import Conversation
from curation.stage import SEVERITIES, Revision, StageFlag, StageResult

_WORD = re.compile(r"[a-z0-9_]+(?:'[a-z]+)?")
NOT_CARRIED = "no answer carries this field"
STAGE, REASON = "labels", "label_suspect"
_TRAILING_JSON = re.compile(r"(\{[^{}]*\})\s*$")


@dataclass(frozen=True)
class LabelAuditConfig:
    fields: tuple[str, ...] = ()  # empty: auto-detect
    folds: int = 5
    seed: int = 0
    alpha: float = 0.1  # additive smoothing of the word counts
    max_values: int = 50  # a field with more distinct values is free text, not a label
    min_share: float = 0.5  # a field must be on at least this share of labelled answers
    min_class_count: int = 5
    min_rows: int = 50
    bigrams: bool = True
    max_words: int = 300  # read the start of the input: a pasted log after it is not what decides the label
    binary: bool = True  # count a word once per row: a pasted log must not outvote the sentence that matters
    severity: str = "warning"  # of the label_suspect flags: a question for review by default


@dataclass
class Suspect:
    id: str
    field: str
    given: str
    suggested: str
    p_given: float
    p_suggested: float


@dataclass
class LabelAudit:
    fields: list[str]
    skipped: dict[str, str]
    labelled: int
    suspects: list[Suspect]
    per_field: dict[str, dict[str, Any]] = field(default_factory=dict)

    def by_id(self) -> dict[str, list[Suspect]]:
        out: dict[str, list[Suspect]] = {}
        for s in self.suspects:
            out.setdefault(s.id, []).append(s)
        return out


def answer_labels(conv: Conversation) -> dict[str, str] | None:
    """The flat string fields of the JSON object that ends the last assistant answer, if any."""
    for m in reversed(conv.messages):
        if m.role != "assistant":
            continue
        text = m.content if isinstance(m.content, str) else ""
        match = _TRAILING_JSON.search(text or "")
        if not match:
            return None
        try:
            obj = json.loads(match.group(1))
        except json.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        out = {k: v for k, v in obj.items() if isinstance(v, str) and v}
        return out or None
    return None


def with_label(conv: Conversation, field_name: str, value: str) -> Conversation:
    """`conv` with `field_name` set to `value` in the JSON object that ends its last assistant answer
    (the rest of the answer, the other fields, their order and the object's spacing kept)."""
    msgs = list(conv.messages)
    for k in range(len(msgs) - 1, -1, -1):
        m = msgs[k]
        if m.role != "assistant":
            continue
        text = m.content if isinstance(m.content, str) else ""
        match = _TRAILING_JSON.search(text or "")
        obj = json.loads(match.group(1)) if match else None
        if match is None or not isinstance(obj, dict) or field_name not in obj:
            raise ValueError(f"the last answer's labels carry no {field_name!r}")
        obj[field_name] = value
        compact = '":"' in match.group(1) or '","' in match.group(1)
        dumped = json.dumps(obj, ensure_ascii=False, separators=(",", ":") if compact else None)
        start, end = match.span(1)
        msgs[k] = dataclasses.replace(m, content=text[:start] + dumped + text[end:])
        return conv.replace_messages(msgs)
    raise ValueError("the conversation has no assistant answer")


def input_text(conv: Conversation) -> str:
    """What the labels should follow from: the user turns (the system prompt is the same for all)."""
    return "\n".join(m.content for m in conv.messages if m.role == "user" and isinstance(m.content, str))


def _features(text: str, bigrams: bool, max_words: int = 0) -> list[str]:
    words = _WORD.findall(text.lower())
    if max_words:
        words = words[:max_words]
    if bigrams:
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    return words


def detect_fields(labels: Iterable[Mapping[str, str]], config: LabelAuditConfig) -> list[str]:
    rows = list(labels)
    if not rows:
        return []
    present: Counter[str] = Counter()
    values: dict[str, set[str]] = {}
    for r in rows:
        for k, v in r.items():
            present[k] += 1
            values.setdefault(k, set()).add(v)
    return sorted(
        k for k, n in present.items() if n / len(rows) >= config.min_share and 2 <= len(values[k]) <= config.max_values
    )


def audit_labels(items: Mapping[str, Conversation], config: LabelAuditConfig | None = None) -> LabelAudit:
    """Out-of-fold naive Bayes over the user turns, per label field; confident-learning suspects."""
    from scipy import sparse

    config = config or LabelAuditConfig()
    labelled: dict[str, dict[str, str]] = {}
    for cid, conv in items.items():
        lab = answer_labels(conv)
        if lab:
            labelled[cid] = lab
    fields = list(config.fields) or detect_fields(labelled.values(), config)
    audit = LabelAudit(fields=[], skipped={}, labelled=len(labelled), suspects=[])
    if len(labelled) < config.min_rows:
        audit.skipped = {f: f"only {len(labelled)} labelled answers (need {config.min_rows})" for f in fields}
        return audit
    ids = sorted(labelled)
    vocab: dict[str, int] = {}
    indptr: list[int] = [0]
    indices: list[int] = []
    data: list[float] = []
    for cid in ids:
        feats = Counter(
            vocab.setdefault(f, len(vocab)) for f in _features(input_text(items[cid]), config.bigrams, config.max_words)
        )
        indices.extend(feats.keys())
        data.extend(1.0 if config.binary else float(n) for n in feats.values())
        indptr.append(len(indices))
    x = sparse.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(ids), len(vocab)),
    )
    rng = np.random.default_rng(config.seed)
    fold = rng.permutation(len(ids)) % max(2, config.folds)
    for name in fields:
        rows = [i for i, cid in enumerate(ids) if name in labelled[cid]]
        if not rows:
            audit.skipped[name] = NOT_CARRIED
            continue
        given = [labelled[ids[i]][name] for i in rows]
        counts = Counter(given)
        small = sorted(v for v, n in counts.items() if n < config.min_class_count)
        if len(counts) < 2 or small:
            why = "one value only" if len(counts) < 2 else f"values with under {config.min_class_count} rows: {small}"
            audit.skipped[name] = why
            continue
        classes = sorted(counts)
        y = np.asarray([classes.index(v) for v in given])
        xf, ff = x[rows], fold[rows]
        proba = np.zeros((len(rows), len(classes)))
        for k in range(max(2, config.folds)):
            train, test = ff != k, ff == k
            if not test.any():
                continue
            onehot = sparse.csr_matrix(
                (np.ones(int(train.sum())), (y[train], np.arange(int(train.sum())))),
                shape=(len(classes), int(train.sum())),
            )
            word_counts = np.asarray((onehot @ xf[train]).todense()) + config.alpha
            log_theta = np.log(word_counts) - np.log(word_counts.sum(axis=1, keepdims=True))
            class_n = np.bincount(y[train], minlength=len(classes)) + 1.0
            log_prior = np.log(class_n / class_n.sum())
            scores = np.asarray(xf[test] @ log_theta.T) + log_prior
            scores -= scores.max(axis=1, keepdims=True)
            p = np.exp(scores)
            proba[test] = p / p.sum(axis=1, keepdims=True)
        thresholds = np.array([proba[y == j, j].mean() for j in range(len(classes))])
        n_suspect = 0
        for r, (i, gi) in enumerate(zip(rows, y, strict=True)):
            if proba[r, gi] >= thresholds[gi]:
                continue
            confident = [j for j in range(len(classes)) if j != gi and proba[r, j] >= thresholds[j]]
            if not confident:
                continue
            j = max(confident, key=lambda c: proba[r, c])
            audit.suspects.append(
                Suspect(
                    ids[i], name, classes[gi], classes[j], round(float(proba[r, gi]), 4), round(float(proba[r, j]), 4)
                )
            )
            n_suspect += 1
        audit.fields.append(name)
        audit.per_field[name] = {
            "rows": len(rows),
            "values": dict(sorted(counts.items())),
            "suspects": n_suspect,
            "oof_accuracy": round(float((proba.argmax(axis=1) == y).mean()), 4),
        }
    return audit


def run(conversations: Sequence[Revision], config: LabelAuditConfig) -> StageResult:
    """The labels stage (`curation.stage`): audit every answer's trailing labels and flag each
    suspect `label_suspect` on its revision, with the field, the given and suggested labels and
    both out-of-fold probabilities in its details. Stats: the audit's summary."""
    if config.severity not in SEVERITIES:
        raise StageError(f"--severity must be one of {', '.join(SEVERITIES)}, got {config.severity!r}")
    if config.folds < 2:
        raise StageError(f"--folds must be at least 2, got {config.folds}")
    revs = {r.id: r.revision for r in conversations}
    audit = audit_labels({r.id: r.conversation for r in conversations}, config)
    if config.fields:
        unknown = [f for f in config.fields if audit.skipped.get(f) == NOT_CARRIED]
        if unknown:
            raise StageError(f"no answer carries the label field(s) {unknown}")
    flags = [
        StageFlag(
            conversation_id=s.id,
            revision=revs[s.id],
            reason=REASON,
            severity=config.severity,
            message=(
                f"{s.field} is {s.given!r}, but the rest of the data points to {s.suggested!r} "
                f"(p {s.p_suggested:.2f} against {s.p_given:.2f})"
            ),
            details={
                "field": s.field,
                "given": s.given,
                "suggested": s.suggested,
                "p_given": s.p_given,
                "p_suggested": s.p_suggested,
            },
        )
        for s in audit.suspects
    ]
    stats = {
        "conversations": len(revs),
        "labelled": audit.labelled,
        "fields": audit.fields,
        "skipped": audit.skipped,
        "flagged": len({s.id for s in audit.suspects}),
        "suspects": len(audit.suspects),
        "per_field": audit.per_field,
    }
    config_stored = {
        "fields": list(config.fields),
        "folds": config.folds,
        "seed": config.seed,
        "severity": config.severity,
    }
    return StageResult(STAGE, config_stored, flags, stats)
