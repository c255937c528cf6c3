"""Spans and findings, and how overlapping spans are resolved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Span:
    """One detected entity in one text."""

    start: int
    end: int
    entity: str
    score: float
    recognizer: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A span in one field of one message of a conversation. No raw text: only its hash."""

    message_index: int
    field: str
    start: int
    end: int
    entity: str
    score: float
    recognizer: str
    text_sha256: str
    role: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Drop every span that lies inside a longer (or equal, higher-scoring) one; keep partial overlaps.

    An e-mail address also matches as a URL and a street name as a person: the enclosing span is
    the better description, and redaction covers the inner one anyway.
    """
    ordered = sorted(spans, key=lambda s: (-(s.end - s.start), -s.score, s.start, s.entity))
    kept: list[Span] = []
    for s in ordered:
        if any(k.start <= s.start and s.end <= k.end for k in kept):
            continue
        kept.append(s)
    return sorted(kept, key=lambda s: (s.start, s.end, s.entity))


def merge_for_redaction(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans covering every character of the input spans (the union), each named
    after its highest-scoring member, so a redaction never leaves a fragment behind."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if out and s.start < out[-1].end:
            last = out[-1]
            best = last if last.score >= s.score else s
            out[-1] = Span(last.start, max(last.end, s.end), best.entity, max(last.score, s.score), best.recognizer)
        else:
            out.append(s)
    return out


# --------------------------------------------------------------------------- message fields
