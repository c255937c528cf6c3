"""Validation use cases: run the gate over the store (re-checking only what changed), read its
results, and inspect one conversation as the target model's template renders it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from curation.models import DEFAULT_MODEL
from curation.progress import Progress
from curation.records import Conversation
from curation.render import load_renderer
from curation.validate import (
    REASONS,
    STAGE,
    ChatRenderer,
    Measurement,
    ValidateConfig,
    cutoff_preview,
    inspect,
    judge_all,
    measure,
)
from workbench.services.core import default_actor
from workbench.services.results import Result, optional
from workbench.store import NotFound, Store
from workbench.store.stage_runs import new_stage_run_id

# The `sift validate --json` contract.
SUMMARY_KEYS = (
    "model",
    "template_sha256",
    "checked",
    "passed",
    "flagged",
    "warnings",
    "tokens",
    "over_max_seq_len",
    "system_prompt",
)


@dataclass(frozen=True)
class CutoffCounts(Result):
    """Over-long rows one cutoff policy touches, and what they lose."""

    rows: int
    lose_last_answer: int
    cut_mid_answer: int | None = optional()  # `truncate` only
    left_without_answer: int = 0


@dataclass(frozen=True)
class CutoffPreview(Result):
    drop_row: CutoffCounts
    drop_trailing_turns: CutoffCounts
    truncate: CutoffCounts

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, int]]) -> CutoffPreview:
        return cls(**{policy: CutoffCounts(**counts) for policy, counts in d.items()})


@dataclass(frozen=True)
class TokenStats(Result):
    total: int
    p50: int
    p90: int
    p99: int
    max: int


@dataclass(frozen=True, kw_only=True)
class ValidationSummary(Result):
    """What a validation run found (the keys in `SUMMARY_KEYS` are `sift validate --json`).
    `system_prompt`, `rechecked` and `run_id` are absent from the stats of runs stored before
    they were recorded."""

    model: str
    template_sha256: str
    system_prompt: str | None = optional()
    checked: int
    passed: int
    flagged: dict[str, int]
    warnings: dict[str, int]
    tokens: TokenStats
    over_max_seq_len: int
    cutoff: CutoffPreview
    rechecked: int | None = optional()
    run_id: str | None = optional()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationSummary:
        return cls(**{**d, "tokens": TokenStats(**d["tokens"]), "cutoff": CutoffPreview.from_dict(d["cutoff"])})

    def contract(self) -> dict[str, Any]:
        """`sift validate --json`: the `SUMMARY_KEYS`."""
        d = self.to_dict()
        return {k: d[k] for k in SUMMARY_KEYS}


@dataclass(frozen=True)
class ValidationRun(Result):
    """The last run: its summary, config, when and by whom (`to_dict()` puts the summary's keys
    first, as the store kept them)."""

    summary: ValidationSummary
    config: dict[str, Any]
    finished_at: str
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "config": self.config, "finished_at": self.finished_at, "actor": self.actor}


@dataclass(frozen=True)
class ValidationDetail(Result):
    """One conversation as the template renders it: `segments` `{"text", "loss"}`, `token_rows`
    `{"index", "id", "token", "loss"}`, `flags` `{"reason", "severity", "message", "details"}`;
    `text` None (and no segments) when it could not be rendered."""

    tokens: int | None
    loss_tokens: int
    turn_tokens: list[int]
    mask_source: str | None
    flags: list[dict[str, Any]]
    text: str | None
    segments: list[dict[str, Any]]
    token_rows: list[dict[str, Any]]
    id: str
    revision: int


@dataclass(frozen=True)
class ReasonCodes(Result):
    """Every validation reason code and what it means."""

    reasons: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.reasons)


_RENDERERS: dict[tuple[str, str], ChatRenderer] = {}
_LOCK = threading.Lock()


def renderer_for(model: str | None, system_prompt: str = "keep") -> ChatRenderer:
    """The tokenizer and template of `model`, loaded once per process (a load takes seconds)."""
    name = model or DEFAULT_MODEL
    with _LOCK:
        hit = _RENDERERS.get((name, system_prompt))
        if hit is not None:
            return hit
        base = next((r for (n, _p), r in _RENDERERS.items() if n == name), None)
        if base is None:
            renderer = load_renderer(name, system_prompt=system_prompt)
        else:  # the same tokenizer under another system-prompt policy
            renderer = ChatRenderer(base.tokenizer, name=name, system_prompt=system_prompt)
        _RENDERERS[(name, system_prompt)] = renderer
        return renderer


class ValidateService:
    store: Store

    def validate(
        self,
        *,
        model: str | None = None,
        max_seq_len: int = 2048,
        severity: dict[str, str] | None = None,
        actor: str | None = None,
        progress: Progress | None = None,
        system_prompt: str = "keep",
    ) -> ValidationSummary:
        """Validate every current conversation; returns the summary (`SUMMARY_KEYS` plus the cutoff
        preview, how many were re-checked and the run id). Flags replace the previous run's."""
        config = ValidateConfig(
            model=model or DEFAULT_MODEL,
            max_seq_len=max_seq_len,
            severity=dict(severity or {}),
            system_prompt=system_prompt,
        )
        renderer = renderer_for(config.model, config.system_prompt)
        ident = renderer.identity
        rechecked = 0
        # Loop in case an edit lands while we work: its new revision is checked too.
        for _ in range(3):
            pending = self.store.validate_pending(ident.key)
            if not pending:
                break
            total = len(pending)
            if progress:
                progress(0, total)
            for k in range(0, total, config.batch_size):
                rows = self.store.revision_contents(pending[k : k + config.batch_size])
                convs = [Conversation.from_json(content) for _c, _r, content in rows]
                ms = measure(convs, renderer)
                self.store.save_validate_results(
                    ident.key,
                    [(c, r, m.tokens, m.loss_tokens, m.to_json()) for (c, r, _), m in zip(rows, ms, strict=True)],
                )
                rechecked += len(rows)
                if progress:
                    progress(min(k + config.batch_size, total), total)

        results = self.store.validate_current_results(ident.key)
        result = judge_all([(c, r, Measurement.from_json(m)) for c, r, m in results], config)
        run_id = new_stage_run_id(STAGE)
        result.config = {
            **result.config,
            "tokenizer": ident.tokenizer_sha256,
            "template_sha256": ident.template_sha256,
            "identity": ident.key,
        }
        out = ValidationSummary.from_dict(
            {
                "model": config.model,
                "template_sha256": ident.template_sha256,
                "system_prompt": config.system_prompt,
                **result.stats,
                "rechecked": rechecked,
                "run_id": run_id,
            }
        )
        result.stats = out.to_dict()
        # The run and its flags in one transaction: a crash between them leaves neither.
        self.store.record_stage(run_id, result, actor=actor or default_actor())
        return out

    def validation_summary(self) -> ValidationRun | None:
        """The last run's summary and config, or None when validation has not run."""
        run = self.store.latest_validate_run()
        if run is None:
            return None
        return ValidationRun(ValidationSummary.from_dict(run["stats"]), run["config"], run["finished_at"], run["actor"])

    def validation_token_lengths(self) -> list[int]:
        """Token counts of the current revisions under the last run's tokenizer and template."""
        run = self.store.latest_validate_run()
        if run is None:
            return []
        return self.store.token_lengths(run["config"]["identity"])

    def validation_cutoff(self, max_seq_len: int) -> CutoffPreview | None:
        """The cutoff-policy preview of the last run's results at another limit (no re-rendering);
        None when validation has not run."""
        run = self.store.latest_validate_run()
        if run is None:
            return None
        results = self.store.validate_current_results(run["config"]["identity"])
        return CutoffPreview.from_dict(cutoff_preview((Measurement.from_json(m) for _c, _r, m in results), max_seq_len))

    def validation_reasons(self) -> ReasonCodes:
        return ReasonCodes(dict(REASONS))

    def inspect_validation(
        self,
        conversation_id: str,
        *,
        model: str | None = None,
        max_seq_len: int = 2048,
        severity: dict[str, str] | None = None,
        revision: int | None = None,
        system_prompt: str | None = None,
    ) -> ValidationDetail:
        """One conversation as the target template renders it: text cut into loss / no-loss
        segments, every token with its loss bit, tokens per turn and the flags."""
        d = self.store.get_conversation(conversation_id, revision)
        if d is None:  # pragma: no cover - get_conversation raises NotFound itself
            raise NotFound(f"no conversation {conversation_id!r}")
        if system_prompt is None:  # the last run's policy, as its flags were computed
            run = self.store.latest_validate_run()
            system_prompt = str(((run or {}).get("config") or {}).get("system_prompt") or "keep")
        config = ValidateConfig(
            model=model or DEFAULT_MODEL,
            max_seq_len=max_seq_len,
            severity=dict(severity or {}),
            system_prompt=system_prompt,
        )
        out = inspect(Conversation.from_dict(d), renderer_for(config.model, config.system_prompt), config)
        return ValidationDetail(**out, id=d["id"], revision=d["revision"])
