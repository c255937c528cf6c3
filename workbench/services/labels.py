"""Label audit use case: score every current conversation's answer labels against the rest of the
data (curation/labels.py) and flag the suspects for review."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curation import labels
from curation.labels import REASON, STAGE, LabelAuditConfig, with_label
from curation.records import Conversation, Provenance
from curation.stage import Revision
from workbench.services.core import default_actor
from workbench.services.results import Result
from workbench.store import Store
from workbench.store.stage_runs import new_stage_run_id

# The `sift label-audit --json` contract.
SUMMARY_KEYS = ("run_id", "conversations", "labelled", "fields", "skipped", "flagged", "suspects", "per_field")


@dataclass(frozen=True)
class LabelAudit(Result):
    """`sift labels --json` (`SUMMARY_KEYS`): `skipped` is {field: why}, `per_field` {field: counts}."""

    run_id: str
    conversations: int
    labelled: int
    fields: list[str]
    skipped: dict[str, str]
    flagged: int
    suspects: int
    per_field: dict[str, Any]

    @classmethod
    def from_stats(cls, d: dict[str, Any]) -> LabelAudit:
        """From a stored run's stats (a key the run did not record reads as empty)."""
        return cls(
            run_id=d.get("run_id", ""),
            conversations=d.get("conversations", 0),
            labelled=d.get("labelled", 0),
            fields=d.get("fields") or [],
            skipped=d.get("skipped") or {},
            flagged=d.get("flagged", 0),
            suspects=d.get("suspects", 0),
            per_field=d.get("per_field") or {},
        )


@dataclass(frozen=True)
class LabelAuditRun(Result):
    """The last audit: its summary, config and who ran it (`to_dict()` puts the summary's keys first)."""

    summary: LabelAudit
    config: dict[str, Any]
    actor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "config": self.config, "actor": self.actor}


@dataclass(frozen=True)
class LabelSuspect(Result):
    """A current `label_suspect` flag: the conversation, its status, the field, the given and the
    suggested label and both out-of-fold probabilities."""

    id: str
    revision: int
    status: str
    field: str | None
    given: str | None
    suggested: str | None
    p_given: float | None
    p_suggested: float | None


@dataclass(frozen=True)
class LabelFixes(Result):
    """`revisions`: {id: new revision}; `skipped`: {id: why not}."""

    applied: int
    revisions: dict[str, int]
    skipped: dict[str, str]


class LabelsService:
    store: Store

    def label_audit(
        self,
        *,
        fields: list[str] | None = None,
        folds: int = 5,
        seed: int = 0,
        severity: str = "warning",
        actor: str | None = None,
    ) -> LabelAudit:
        """Audit the labels that end each answer (a trailing JSON object); flags replace the last run's.

        Each suspect becomes a `label_suspect` flag on the conversation's current revision, with the
        field, the given label, the suggested one and both out-of-fold probabilities in its details.
        """
        config = LabelAuditConfig(fields=tuple(fields or ()), folds=folds, seed=seed, severity=severity)
        revisions = [
            Revision(cid, rev, Conversation.from_json(content))
            for batch in self.store.iter_current()
            for cid, rev, content in batch
        ]
        result = labels.run(revisions, config)
        run_id = new_stage_run_id(STAGE)
        result.stats = {"run_id": run_id, **result.stats}
        out = LabelAudit(**result.stats)
        self.store.record_stage(run_id, result, actor=actor or default_actor())
        return out

    def label_audit_summary(self) -> LabelAuditRun | None:
        """The last label audit's summary (`SUMMARY_KEYS`) and config, or None before the first."""
        runs = [r for r in self.store.stage_runs(STAGE) if r.get("finished_at")]
        if not runs:
            return None
        last = max(runs, key=lambda r: (str(r["finished_at"]), r["id"]))
        return LabelAuditRun(
            LabelAudit.from_stats(last.get("stats") or {}), last.get("config") or {}, last.get("actor")
        )

    def label_suspects(self, *, limit: int = 1000) -> list[LabelSuspect]:
        """Current `label_suspect` flags: conversation, status, field, given, suggested, probabilities."""
        out = []
        for f in self.store.current_flags(STAGE, REASON, limit=limit):
            d = f["details"] or {}
            out.append(
                LabelSuspect(
                    id=f["conversation_id"],
                    revision=f["revision"],
                    status=f["status"],
                    field=d.get("field"),
                    given=d.get("given"),
                    suggested=d.get("suggested"),
                    p_given=d.get("p_given"),
                    p_suggested=d.get("p_suggested"),
                )
            )
        return out

    def apply_label_suggestions(self, ids: list[str] | None = None, *, actor: str | None = None) -> LabelFixes:
        """Set each suspect's label to the audit's suggestion: one new revision per conversation (its
        previous revision stays), all in one transaction. `ids` limits it to those conversations.

        Only flags on current revisions count; a row someone saves while this runs makes the whole
        call a conflict (nothing is written).
        """
        actor = actor or default_actor()
        wanted = set(ids) if ids is not None else None
        by_id: dict[str, list[dict[str, Any]]] = {}
        for f in self.store.current_flags(STAGE, REASON, limit=10_000_000):
            if wanted is None or f["conversation_id"] in wanted:
                by_id.setdefault(f["conversation_id"], []).append(f)
        skipped = {cid: "no label_suspect flag on its current revision" for cid in (wanted or set()) - set(by_id)}
        edits: list[tuple[str, int, Conversation, list[str]]] = []
        for cid, flags in sorted(by_id.items()):
            conv = self.store.conversation(cid, flags[0]["revision"])
            changes = []
            for f in flags:
                d = f["details"] or {}
                conv = with_label(conv, str(d["field"]), str(d["suggested"]))
                changes.append(f"{d['field']} {d['given']!r} → {d['suggested']!r}")
            edits.append((cid, flags[0]["revision"], conv, changes))
        revisions: dict[str, int] = {}
        with self.store.db.transaction() as tx:  # all or nothing; a row edited meanwhile is a conflict
            for cid, rev, conv, changes in edits:
                revisions[cid] = self.store.add_revision(
                    cid,
                    conv,
                    actor=actor,
                    kind="edit",
                    expected_revision=rev,
                    note="label audit suggestion: " + "; ".join(changes),
                    provenance=Provenance(kind="edit", actor=actor, parameters={"label_audit": changes}),
                    con=tx,
                )
        return LabelFixes(applied=len(revisions), revisions=revisions, skipped=skipped)
