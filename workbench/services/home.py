"""The pipeline at a glance: live counts per step, what blocks freezing, and the next thing to do.

Every figure comes from a cheap read of the store (counts, the latest stage runs); nothing here
renders, tokenizes or splits, so the Home page stays fast on a large store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workbench.services.results import Result

# The steps in the order an SME takes them; `page` is the app's url path of the step's page.
STEPS = (
    ("import", "Import", "import"),
    ("validate", "Validate", "validate"),
    ("dedup", "Dedup", "dedup"),
    ("pii", "PII", "pii"),
    ("augment", "Augment", "augment"),
    ("review", "Review", "review"),
    ("freeze", "Freeze a version", "versions"),
    ("train", "Train", "train"),
    ("compare", "Compare", "compare"),
)


@dataclass(frozen=True)
class PipelineStep(Result):
    """One step: done when its stage has run over the current data (optional steps — augment —
    are done when skipped); `why` says what to do when it is not; `counts` are the step's figures."""

    step: str
    title: str
    page: str
    done: bool
    summary: str
    why: str
    counts: dict[str, Any]


@dataclass(frozen=True)
class Blocker(Result):
    """What keeps `conversations` out of a version right now."""

    reason: str
    conversations: int
    what: str


@dataclass(frozen=True)
class NextStep(Result):
    step: str
    title: str
    page: str
    why: str


@dataclass(frozen=True)
class Pipeline(Result):
    """The Home page: the steps in order, the blockers, the warning flags {reason: n} and
    the first step that is not done."""

    steps: list[PipelineStep]
    blockers: list[Blocker]
    warnings: dict[str, int]
    next: NextStep


class HomeService:
    store: Any

    def pipeline(self) -> Pipeline:
        """Live counts per step, what blocks freezing, and the next thing to do."""
        st = self.store.stats()
        total = st["conversations"]
        by_status = st["by_status"]
        flags = self.store.flag_counts()
        errors = flags.get("error", {})
        warnings = flags.get("warning", {})
        steps: list[dict[str, Any]] = []

        def add(step: str, done: bool, summary: str, why: str, **counts: Any) -> None:
            title, page = next((t, p) for k, t, p in STEPS if k == step)
            steps.append(
                {"step": step, "title": title, "page": page, "done": done, "summary": summary, "why": why,
                 "counts": counts}
            )  # fmt: skip

        add(
            "import",
            total > 0,
            f"{total:,} conversations from {st['sources']} file(s); {st['quarantined']:,} "
            f"{'row' if st['quarantined'] == 1 else 'rows'} quarantined",
            "import a file of chat data",
            conversations=total,
            quarantined=st["quarantined"],
            sources=st["sources"],
        )
        for stage, title in (("validate", "validation"), ("dedup", "dedup")):
            changed = self.store.changed_since_stage(stage)
            stage_flags = self.store.flag_counts(stage)
            flagged = sum(n for per in stage_flags.values() for n in per.values())
            if changed is None:
                add(stage, False, f"{title} has not run", f"run {title} over the data", flagged=0, ran=False)
            else:
                add(
                    stage,
                    not changed,
                    f"{flagged:,} conversations flagged; {len(changed):,} changed since the last run",
                    f"{len(changed):,} conversations changed since the last {title} run",
                    flagged=flagged,
                    unchecked=len(changed),
                    ran=True,
                )
        undecided = len([p for p in self.store.dedup_pairs(borderline=True) if not p["decision"]])
        steps[-1]["counts"]["borderline_undecided"] = undecided
        if undecided:
            steps[-1]["summary"] += f"; {undecided:,} borderline pairs to decide"
        pii = self.store.pii_overview()
        scanned = pii.get("scanned", 0)
        add(
            "pii",
            scanned > 0 and not pii.get("unresolved"),
            f"{scanned:,} conversations scanned; {pii.get('unresolved', 0):,} with findings to review; "
            f"{pii.get('redacted_conversations', 0):,} redacted"
            if scanned
            else "PII scan has not run",
            "scan for personal data"
            if not scanned
            else f"{pii.get('unresolved', 0):,} conversations with PII to review",
            scanned=scanned,
            unresolved=pii.get("unresolved", 0),
            redacted=pii.get("redacted_conversations", 0),
        )
        origins = self.store.origin_counts()
        add(
            "augment",
            True,
            f"{origins.get('paraphrase', 0):,} paraphrased conversations (optional step)",
            "",
            paraphrases=origins.get("paraphrase", 0),
        )
        pending = by_status.get("pending", 0)
        add(
            "review",
            total > 0 and pending == 0,
            f"{by_status.get('accepted', 0):,} accepted · {by_status.get('rejected', 0):,} rejected · "
            f"{pending:,} pending",
            f"{pending:,} conversations wait for review",
            **by_status,
        )
        versions = self.store.list_versions()
        add(
            "freeze",
            bool(versions),
            f"{len(versions)} version(s)" + (f", latest {versions[-1]['name']}" if versions else ""),
            "freeze the reviewed conversations into a train/eval version",
            versions=len(versions),
        )
        runs = self.store.list_runs()
        states: dict[str, int] = {}
        for r in runs:
            states[r["state"]] = states.get(r["state"], 0) + 1
        add(
            "train",
            any(r["state"] == "finished" for r in runs),
            ", ".join(f"{n} {s}" for s, n in sorted(states.items())) if runs else "no training run yet",
            "train an adapter on a version" if not runs else "wait for a run to finish",
            runs=len(runs),
            **{f"runs_{s}": n for s, n in states.items()},
        )
        finished = states.get("finished", 0)
        add(
            "compare",
            finished > 0,
            f"{finished} finished run(s) to compare" if finished else "nothing to compare yet",
            "compare the tuned model with the base model",
            finished=finished,
        )

        blockers = [
            {"reason": r, "conversations": n, "what": "blocks freezing (error flag)"} for r, n in sorted(errors.items())
        ]
        if pii.get("unresolved"):
            blockers.append(
                {"reason": "pii_unresolved", "conversations": pii["unresolved"], "what": "PII findings not reviewed"}
            )
        if pending:
            blockers.append(
                {"reason": "pending", "conversations": pending, "what": "not reviewed (a version takes accepted ones)"}
            )
        for s in steps:
            if s["step"] in ("validate", "dedup") and s["counts"]["ran"] and s["counts"]["unchecked"]:
                blockers.append(
                    {
                        "reason": f"unchecked_{s['step']}",
                        "conversations": s["counts"]["unchecked"],
                        "what": f"changed since the last {s['step']} run (freeze refuses them)",
                    }
                )
        nxt = next((s for s in steps if not s["done"]), None)
        if nxt is None:
            nxt = steps[-1]
        return Pipeline(
            steps=[PipelineStep(**s) for s in steps],
            blockers=[Blocker(**b) for b in blockers],
            warnings=dict(sorted(warnings.items())),
            next=NextStep(step=nxt["step"], title=nxt["title"], page=nxt["page"], why=nxt["why"]),
        )
