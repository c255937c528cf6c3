"""The one shape of a curation stage (after datatrove's pipeline step).

A stage is a config dataclass plus a pure `run(conversations, config) -> StageResult`: it takes
the conversations it judges (each with its id and revision), returns the flags it raises — each
with a reason code, a severity and a message, on one conversation revision — and its stats, and
touches no store, no UI and no globals. The workbench records a result with one helper,
`Store.record_stage(run_id, result, actor=…, con=…)`: the run, its config and stats, and the flags
(replacing the stage's previous flags in `result.scope`) land in the caller's transaction, so a
crash leaves neither.

Stages that follow it: validate (`curation.validate.run`, over measurements: rendering and
tokenizing are cached per revision), dedup (`curation.dedup.stage_result`, over the clusters
`find_duplicates` found), labels (`curation.labels.run`); augment ends its run through the helper
(no flags: it writes new conversations); PII keeps its findings table and records the flags it
derives from them (a reviewer changes findings one by one) through the same helper: see
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from curation.records import Conversation

ERROR, WARNING = "error", "warning"
SEVERITIES = (WARNING, ERROR)  # the order `--severity` lists them


@dataclass(frozen=True, slots=True)
class Revision:
    """One conversation revision a stage judges."""

    id: str
    revision: int
    conversation: Conversation


@dataclass(frozen=True, slots=True)
class StageFlag:
    """A stage's verdict on one conversation revision: why (reason code), how bad (error blocks
    freezing, warning does not) and what to tell a reviewer; `details` for the pages (spans…)."""

    conversation_id: str
    revision: int
    reason: str
    severity: str
    message: str
    details: dict[str, Any] | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "revision": self.revision,
            "reason": self.reason,
            "severity": self.severity,
            "message": self.message,
            "details": self.details,
        }


@dataclass(slots=True)
class StageResult:
    """What one run of a stage found. `config` is stored with the run (and with every version
    frozen on it); `scope`: the (id, revision) pairs whose earlier flags of this stage the new ones
    replace — None replaces them all."""

    stage: str
    config: dict[str, Any]
    flags: list[StageFlag] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    scope: list[tuple[str, int]] | None = None

    def flag_rows(self) -> list[dict[str, Any]]:
        return [f.to_row() for f in self.flags]


C_contra = TypeVar("C_contra", contravariant=True)


class Stage(Protocol[C_contra]):
    """A stage as a value: its name and its run function."""

    name: str

    def run(self, conversations: Sequence[Revision], config: C_contra) -> StageResult: ...


__all__ = ["ERROR", "SEVERITIES", "WARNING", "Revision", "Stage", "StageFlag", "StageResult"]
