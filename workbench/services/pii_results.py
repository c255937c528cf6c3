"""Typed results of the PII service (`workbench/services/pii.py`): each `to_dict()` is the
`sift pii-*` / `sift redact` `--json` object. Finding rows (`{"id", "conversation_id", "revision",
"message_index", "field", "role", "start", "end", "entity", "score", "recognizer", "status", ...}`)
stay dicts: their columns are the store's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.services.results import Result, optional


@dataclass(frozen=True)
class PiiScanReport(Result):
    """`sift pii-scan --json`: `findings` {ENTITY: n}; `run_id` absent on a dry run."""

    messages_scanned: int
    findings: dict[str, int]
    conversations_with_findings: int
    seconds: float
    run_id: str | None = optional()


@dataclass(frozen=True)
class RedactionReport(Result):
    """`sift redact --json`: counts by entity of the findings, the spans redacted and the pending
    ones left for review; `reused_scan` revisions whose stored scan was reused; `samples`
    (`{conversation_id, message_index, field, entity, before, after}`) on a dry run only."""

    messages_scanned: int
    findings: dict[str, int]
    conversations_redacted: int
    reused_scan: int
    spans_redacted: dict[str, int]
    pending_left: dict[str, int]
    samples: list[dict[str, Any]] | None = optional()


@dataclass(frozen=True)
class FindingPage(Result):
    """A page of findings (in the review queue each also has `text`: the field it points into,
    None when the span no longer matches)."""

    total: int
    findings: list[dict[str, Any]]


@dataclass(frozen=True)
class BulkReview(Result):
    """`sift pii-review --json` in bulk: how many pending findings matched, how many changed (0 on
    a dry run), per entity, and the text remembered in the allow-list (None unless asked)."""

    matched: int
    updated: int
    status: str
    by_entity: dict[str, int]
    remembered: str | None


@dataclass(frozen=True)
class AllowList(Result):
    """The store's allow-list: `{"term", "entity", "actor", "at"}` each."""

    terms: list[dict[str, Any]]


@dataclass(frozen=True)
class AddedFinding(Result):
    """A finding a reviewer added by hand (the stored row; `to_dict()` is that row)."""

    finding: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.finding)


@dataclass(frozen=True)
class PiiOverview(Result):
    """`entities`: {ENTITY: {status: n}} over current revisions; `unresolved`: conversations with a
    pending finding."""

    conversations: int
    scanned: int
    unresolved: int
    redacted_conversations: int
    entities: dict[str, dict[str, int]]


@dataclass(frozen=True)
class PiiScores(Result):
    """Detection scores against gold spans: `overall` binary (PII vs not) per gold span, per entity
    precision/recall/F2/support, the clean-text figures (texts with no gold span) and `tokens`
    (presidio-research's per-token way)."""

    overall: dict[str, Any]
    entities: dict[str, dict[str, Any]]
    clean_texts: int
    clean_finding_rate: float | None
    clean_person_findings: int
    tokens: dict[str, Any]


@dataclass(frozen=True)
class PiiEvalReport(PiiScores):
    """`sift pii-eval --json`: the scores (PiiScores' fields, first), how many texts and how fast;
    with `--vanilla` the same scores for vanilla Presidio over the same texts."""

    texts: int
    docs_per_second: float | None
    vanilla: PiiScores | None = optional()


@dataclass(frozen=True)
class PiiEvalDetail(Result):
    """Every score `curation.pii.score_spans` gives (also ignored predictions and the clean texts
    with findings), with the timing."""

    overall: dict[str, Any]
    entities: dict[str, dict[str, Any]]
    ignored_predictions: int
    clean_texts: int
    clean_texts_with_findings: int
    clean_finding_rate: float | None
    clean_person_findings: int
    tokens: dict[str, Any]
    texts: int
    docs_per_second: float | None
    seconds: float


__all__ = [
    "AddedFinding",
    "AllowList",
    "BulkReview",
    "FindingPage",
    "PiiEvalDetail",
    "PiiEvalReport",
    "PiiOverview",
    "PiiScanReport",
    "PiiScores",
    "RedactionReport",
]
