"""Validation use cases: run the gate over the store (re-checking only what changed), read its
results, and inspect one conversation as the target model's template renders it."""

from __future__ import annotations

import threading
from typing import Any

from curation.models import DEFAULT_MODEL
from curation.progress import Progress
from curation.records import Conversation
from curation.render import load_renderer
from curation.validate import (
    REASONS,
    ChatRenderer,
    Measurement,
    ValidateConfig,
    cutoff_preview,
    inspect,
    judge,
    measure,
    summarize,
)
from workbench.services.core import default_actor
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
    ) -> dict[str, Any]:
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
        measurements = [Measurement.from_json(m) for _c, _r, m in results]
        flags = [judge(m, config) for m in measurements]
        summary = summarize(measurements, flags, config)
        run_id = new_stage_run_id("validate")
        run_config = {
            **config.to_dict(),
            "tokenizer": ident.tokenizer_sha256,
            "template_sha256": ident.template_sha256,
            "identity": ident.key,
        }
        out = {
            "model": config.model,
            "template_sha256": ident.template_sha256,
            "system_prompt": config.system_prompt,
            **summary,
            "rechecked": rechecked,
            "run_id": run_id,
        }
        # The run and its flags in one transaction: a crash between them leaves neither.
        with self.store.db.transaction() as tx:
            self.store.start_stage_run(run_id, "validate", run_config, actor=actor or default_actor(), con=tx)
            self.store.replace_flags(
                "validate",
                run_id,
                [
                    {
                        "conversation_id": cid,
                        "revision": rev,
                        "reason": f.reason,
                        "severity": f.severity,
                        "message": f.message,
                        "details": f.details,
                    }
                    for (cid, rev, _m), fl in zip(results, flags, strict=True)
                    for f in fl
                ],
                scope=None,
                stats=out,
                con=tx,
            )
        return out

    def validation_summary(self) -> dict[str, Any] | None:
        """The last run's summary and config, or None when validation has not run."""
        run = self.store.latest_validate_run()
        if run is None:
            return None
        return {**run["stats"], "config": run["config"], "finished_at": run["finished_at"], "actor": run["actor"]}

    def validation_token_lengths(self) -> list[int]:
        """Token counts of the current revisions under the last run's tokenizer and template."""
        run = self.store.latest_validate_run()
        if run is None:
            return []
        return self.store.token_lengths(run["config"]["identity"])

    def validation_cutoff(self, max_seq_len: int) -> dict[str, Any]:
        """The cutoff-policy preview of the last run's results at another limit (no re-rendering)."""
        run = self.store.latest_validate_run()
        if run is None:
            return {}
        results = self.store.validate_current_results(run["config"]["identity"])
        return cutoff_preview((Measurement.from_json(m) for _c, _r, m in results), max_seq_len)

    def validation_reasons(self) -> dict[str, str]:
        return dict(REASONS)

    def inspect_validation(
        self,
        conversation_id: str,
        *,
        model: str | None = None,
        max_seq_len: int = 2048,
        severity: dict[str, str] | None = None,
        revision: int | None = None,
        system_prompt: str | None = None,
    ) -> dict[str, Any]:
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
        out["id"] = d["id"]
        out["revision"] = d["revision"]
        return out
