"""Redaction: replace spans through presidio-anonymizer (placeholder, consistent pseudonym, mask,
hash) and keep track of where the remaining spans moved."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from curation.pii.config import PiiConfig, PiiError
from curation.pii.fields import field_text, with_field
from curation.pii.spans import Finding, Span, merge_for_redaction
from curation.records import Conversation, sha256_hex

_FIRST = (
    "Alex",
    "Robin",
    "Jordan",
    "Casey",
    "Morgan",
    "Taylor",
    "Avery",
    "Riley",
    "Quinn",
    "Jamie",
    "Drew",
    "Skyler",
    "Reese",
    "Rowan",
    "Emerson",
    "Finley",
    "Hayden",
    "Kendall",
    "Logan",
    "Parker",
    "Sage",
    "Blair",
)
_LAST = (
    "Ashdown",
    "Brightwater",
    "Coldridge",
    "Dunmore",
    "Eastlake",
    "Fernsby",
    "Glenholm",
    "Harrowgate",
    "Ivybridge",
    "Jessop",
    "Kettering",
    "Larkspur",
    "Merriweather",
    "Northcott",
    "Oakhurst",
    "Pennington",
    "Quarrington",
    "Rookwood",
    "Stanbury",
    "Thistlewood",
    "Upton",
    "Vantreight",
    "Whitlock",
    "Yarrow",
)
_PLACES = ("Examplestad", "Sampleton", "Placeholm", "Testerby", "Mockford", "Dummington", "Fauxville", "Nulltown")
_STREET_NAMES = ("Example", "Sample", "Placeholder", "Surrogate", "Fictional", "Pseudonym")


def _pick(h: bytes, i: int, seq: Sequence[str]) -> str:
    return seq[int.from_bytes(h[i : i + 4], "big") % len(seq)]


class Pseudonymizer:
    """Consistent surrogates within one conversation: the same (entity, text) always gets the same
    surrogate, two different texts never share one, and a surrogate never equals an original.
    Derived from `key` (the conversation id), so a re-run gives the same output."""

    def __init__(self, key: str, originals: Iterable[str] = ()) -> None:
        self.key = key
        self.mapping: dict[tuple[str, str], str] = {}
        self.used: set[str] = set()
        self.originals = {_norm(o) for o in originals}

    def __call__(self, entity: str, original: str) -> str:
        k = (entity, _norm(original))
        if k not in self.mapping:
            for attempt in range(1000):
                h = hashlib.sha256(f"{self.key}\x00{entity}\x00{k[1]}\x00{attempt}".encode()).digest()
                s = _surrogate(entity, original, h, attempt)
                if _norm(s) not in self.used and _norm(s) not in self.originals:
                    break
            self.mapping[k] = s
            self.used.add(_norm(s))
        return self.mapping[k]


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


def _surrogate(entity: str, original: str, h: bytes, attempt: int) -> str:
    n = int.from_bytes(h[8:12], "big")
    first, last = _pick(h, 0, _FIRST), _pick(h, 4, _LAST)
    if entity == "PERSON":
        return first if len(original.split()) == 1 else f"{first} {last}"
    if entity == "EMAIL_ADDRESS":
        return f"{first.lower()}.{last.lower()}{n % 100 if attempt else ''}@example.com"
    if entity == "PHONE_NUMBER":
        return f"+1-555-01{n % 100:02d}" if attempt < 100 else f"+1-555-{n % 10000:04d}"
    if entity == "LOCATION":
        return _pick(h, 0, _PLACES) + (f" {n % 100}" if attempt else "")
    if entity == "STREET_ADDRESS":
        return f"{n % 900 + 100} {_pick(h, 4, _STREET_NAMES)} Street"
    if entity == "URL":
        return f"https://example.com/{h[:4].hex()}"
    if entity == "IP_ADDRESS":
        return f"192.0.2.{n % 254 + 1}" if attempt < 50 else f"198.51.100.{n % 254 + 1}"
    if entity == "CREDIT_CARD":
        return f"4000 0000 0000 {n % 10000:04d}"
    if entity == "US_SSN":
        return f"000-00-{n % 10000:04d}"
    if entity == "IBAN_CODE":
        return f"XX00 TEST {n % 10**8:08d}"
    return f"<{entity}_{h[:3].hex()}>"


def _operators(config: PiiConfig, entities: Iterable[str], pseudo: Pseudonymizer | None) -> dict[str, Any]:
    from presidio_anonymizer.entities import OperatorConfig

    ops: dict[str, Any] = {}
    for e in set(entities):
        if config.operator == "placeholder":
            ops[e] = OperatorConfig("replace", {"new_value": f"<{e}>"})
        elif config.operator == "mask":
            ops[e] = OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 1 << 30, "from_end": False})
        elif config.operator == "hash":
            ops[e] = OperatorConfig("hash", {"hash_type": "sha256", "salt": config.hash_salt})
        else:
            assert pseudo is not None
            ops[e] = OperatorConfig("custom", {"lambda": lambda text, _e=e: pseudo(_e, text)})
    return ops


@dataclass(frozen=True, slots=True)
class Replacement:
    old_start: int
    old_end: int
    new_start: int
    new_end: int
    entity: str


def redact_text(
    text: str, spans: Sequence[Span], config: PiiConfig, pseudo: Pseudonymizer | None = None, anonymizer: Any = None
) -> tuple[str, list[Replacement]]:
    """The text with every span replaced (overlapping spans merged first), through presidio-anonymizer."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import RecognizerResult as AnonResult

    merged = merge_for_redaction(spans)
    if not merged:
        return text, []
    engine = anonymizer or AnonymizerEngine()
    result = engine.anonymize(
        text=text,
        analyzer_results=[AnonResult(s.entity, s.start, s.end, s.score) for s in merged],
        operators=_operators(config, (s.entity for s in merged), pseudo),
        merge_entities_with_spaces=False,
    )
    items = sorted(result.items, key=lambda i: i.start)
    if len(items) != len(merged):  # pragma: no cover - spans are disjoint, so presidio keeps them all
        raise PiiError("presidio-anonymizer merged spans it was given as disjoint")
    return result.text, [
        Replacement(s.start, s.end, i.start, i.end, s.entity) for s, i in zip(merged, items, strict=True)
    ]


def shift(start: int, end: int, replacements: Sequence[Replacement]) -> tuple[int, int] | None:
    """Where [start, end) of the old text lies in the redacted text; None if a replacement touched it."""
    delta = 0
    for r in replacements:
        if r.old_end <= start:
            delta += (r.new_end - r.new_start) - (r.old_end - r.old_start)
        elif r.old_start < end:
            return None
    return start + delta, end + delta


@dataclass(slots=True)
class Redacted:
    conversation: Conversation
    # per field key (message_index, field): the replacements made, for moving the findings kept
    replacements: dict[tuple[int, str], list[Replacement]]


def redact_conversation(
    conversation: Conversation,
    findings: Sequence[Finding],
    config: PiiConfig,
    key: str,
    anonymizer: Any = None,
) -> Redacted:
    """Apply `findings` (already chosen: the caller decides which statuses count) to a conversation.
    `key` seeds the pseudonyms (the conversation id), so every turn uses the same surrogates."""
    by_field: dict[tuple[int, str], list[Finding]] = {}
    for f in findings:
        by_field.setdefault((f.message_index, f.field), []).append(f)
    originals = []
    for (mi, name), fs in by_field.items():
        text = field_text(conversation.messages[mi], name)
        originals += [text[f.start : f.end] for f in fs]
    pseudo = Pseudonymizer(key, originals) if config.operator == "pseudonym" else None
    messages = list(conversation.messages)
    done: dict[tuple[int, str], list[Replacement]] = {}
    for mi, name in sorted(by_field):
        fs = by_field[(mi, name)]
        text = field_text(messages[mi], name)
        for f in fs:
            if f.end > len(text) or sha256_hex(text[f.start : f.end]) != f.text_sha256:
                raise PiiError(
                    f"finding {f.entity} at message {mi} {name} [{f.start}:{f.end}] no longer matches the text"
                )
        new, reps = redact_text(
            text, [Span(f.start, f.end, f.entity, f.score, f.recognizer) for f in fs], config, pseudo, anonymizer
        )
        messages[mi] = with_field(messages[mi], name, new)
        done[(mi, name)] = reps
    return Redacted(conversation.replace_messages(messages), done)
