"""Augment use cases: paraphrase user turns through an OpenAI-compatible endpoint, keep what passes
the filters as new pending conversations in the parent's family, and review them beside the parent.

A run works parent by parent: calls go out `concurrency` at a time, and each parent's children,
rejects and new cache entries land in one transaction as soon as its calls are back. A failure
(unreachable endpoint, 401, 429 or 5xx after retries, timeout, a non-OpenAI answer) stops the run
with one clear message; what was saved stays. A re-run asks the cache first, so finished calls are
not paid twice and the children they gave are found again instead of added twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from curation import augment as ag
from curation.llm import Completion, LLMClient, LLMConfig, LLMError, endpoint_host
from curation.progress import Progress
from curation.records import Conversation
from curation.stage import StageResult
from workbench.services.core import default_actor
from workbench.services.results import Result, optional
from workbench.store import Store
from workbench.store.stage_runs import new_stage_run_id

RESULT_KEYS = ("parents", "requested", "generated", "kept", "rejected", "calls", "cached_calls")


def _pii_detector() -> ag.PiiDetector | None:
    """Presidio through the PII stage, built once per process; None when the stage is missing."""
    try:
        from curation import pii
    except ImportError:
        return None
    try:
        from workbench.services.pii import analyzer as shared_analyzer

        engine = shared_analyzer()
    except ImportError:
        engine = pii.build_analyzer()
    # Above 0.4, PERSON/LOCATION come from spaCy's NER only, not from the proper-noun recognizer,
    # which would call any capitalised first word of a paraphrase a name.
    config = pii.PiiConfig(thresholds={**pii.DEFAULT_THRESHOLDS, "PERSON": 0.5, "LOCATION": 0.5})

    def analyze(texts: Sequence[str]) -> list[list[tuple[str, str]]]:
        spans = pii.analyze_texts(engine, list(texts), config)
        return [[(s.entity, t[s.start : s.end]) for s in ss] for t, ss in zip(texts, spans, strict=True)]

    return ag.pii_detector_from(analyze)


@dataclass(frozen=True)
class AugmentReport(Result):
    """`sift augment --json`: `rejected` is {reason: n}; `calls` were made to the endpoint (on a
    dry run: would be made), `cached_calls` answered from the cache. A dry run adds
    `estimated_tokens` (what the calls would cost at most) and writes nothing; a run adds `run_id`."""

    parents: int
    requested: int
    generated: int
    kept: int
    rejected: dict[str, int]
    calls: int
    cached_calls: int
    estimated_tokens: dict[str, int] | None = optional()
    run_id: str | None = optional()


@dataclass(frozen=True)
class Family(Result):
    """A parent and its paraphrases: `children` `{"id", "status", "revision", "variation",
    "parent_revision", "messages", "provenance"}` each; `rejects` the variations that were not kept."""

    id: str
    status: str
    revision: int
    children: list[dict[str, Any]]
    rejects: list[dict[str, Any]]


@dataclass(frozen=True)
class ParentPreview(Result):
    """What a run would make of one parent (nothing written): its paraphrased user turns, the
    endpoint's answers, the variations kept (`{"variation", "turns"}`) and those rejected
    (`{"variation", "reason", "text", "details"}`)."""

    parent_id: str
    turns: list[str]
    answers: list[str]
    kept: list[dict[str, Any]]
    rejected: list[dict[str, Any]]


@dataclass(frozen=True)
class FamilyPage(Result):
    total: int
    parents: list[Family]


def make_configs(
    config: ag.AugmentConfig | None = None, llm: LLMConfig | None = None, **overrides: Any
) -> tuple[ag.AugmentConfig, LLMConfig]:
    """Configs from bases (default: the defaults) with the non-None overrides applied, each to the
    config that has the field."""
    a = {f: getattr(config or ag.AugmentConfig(), f) for f in ag.AugmentConfig.__dataclass_fields__}
    b = {f: getattr(llm or LLMConfig(), f) for f in LLMConfig.__dataclass_fields__}
    for k, v in overrides.items():
        if v is None:
            continue
        if k in a:
            a[k] = v
        elif k in b:
            b[k] = v
        else:
            raise ag.AugmentError(f"unknown augment option {k!r}")
    return ag.AugmentConfig(**a), LLMConfig(**b)


class AugmentService:
    store: Store

    def _augment_plan(
        self, config: ag.AugmentConfig, client: LLMClient, model: str, limit: int | None, ids: list[str] | None
    ) -> list[ag.ParentPlan]:
        rows = self.store.augment_parents(statuses=config.statuses, limit=limit, ids=ids)
        parents = [ag.Parent(cid, rev, fam, Conversation.from_json(content)) for cid, rev, fam, content in rows]
        return ag.plan(parents, config, model)

    def augment(
        self,
        *,
        config: ag.AugmentConfig | None = None,
        llm: LLMConfig | None = None,
        limit: int | None = None,
        ids: list[str] | None = None,
        dry_run: bool = False,
        actor: str | None = None,
        progress: Progress | None = None,
        **overrides: Any,
    ) -> AugmentReport:
        """Paraphrase the first (or every) user turn of up to `limit` parents into `n` variations.

        Returns the `sift augment --json` object: parents, requested, generated, kept,
        rejected {reason: n}, calls (made to the endpoint), cached_calls (answered from the cache).
        A dry run makes no call and writes nothing: `calls` are those a run would make, and
        `estimated_tokens` says what they would cost at most.
        """
        config, llm = make_configs(config, llm, **overrides)
        actor = actor or default_actor()
        client = LLMClient(llm)
        model = client.default_model()
        plans = self._augment_plan(config, client, model, limit, ids)
        keys = list(dict.fromkeys(c.key for pp in plans for c in pp.calls))
        cached = {k: Completion.from_dict(v) for k, v in self.store.llm_cache_get(keys).items()}
        result: dict[str, Any] = {
            "parents": len(plans),
            "requested": len(plans) * config.n,
            "generated": 0,
            "kept": 0,
            "rejected": {},
            "calls": len(keys) - len(cached),
            "cached_calls": len(cached),
        }
        if dry_run:
            todo = [pp for pp in plans if any(c.key not in cached for c in pp.calls)]
            estimated = ag.estimate(todo, config)
            return AugmentReport(**result, estimated_tokens=estimated)
        run_id = new_stage_run_id("augment")
        run_config = {
            "augment": config.to_dict(),
            "llm": {**llm.to_dict(), "endpoint": endpoint_host(llm.endpoint)},
            "model": model,
        }
        self.store.start_stage_run(run_id, ag.STAGE, run_config, actor=actor)
        started = time.perf_counter()
        pii = _pii_detector() if config.check_pii else None
        job = _Run(self.store, run_id, config, model, endpoint_host(llm.endpoint), actor, pii, progress, len(plans))
        job.result.update(cached_calls=len(cached))
        responses: dict[str, Completion] = dict(cached)
        error: LLMError | None = None
        try:
            # Parents whose calls are all cached need no endpoint: they go first.
            waiting: list[ag.ParentPlan] = []
            for pp in plans:
                if all(c.key in responses for c in pp.calls):
                    job.collect(pp, responses, set())
                    job.flush(when_full=True)
                else:
                    waiting.append(pp)
            job.flush()
            if waiting:
                error = job.call_and_collect(waiting, LLMClient(llm), llm.concurrency, responses)
        finally:
            job.flush()
            result = job.finish()
            stats = {**result, "seconds": round(time.perf_counter() - started, 2)}
            if error is not None:
                stats["error"] = str(error)
            # no flags (children are new conversations); the stats end the run begun above
            self.store.record_stage(run_id, StageResult(ag.STAGE, run_config, [], stats, scope=[]), new_run=False)
        if error is not None:
            done, total = job.done, len(plans)
            raise LLMError(
                f"{error} — {done} of {total} parents done and saved, {total - done} left; run again to resume "
                "(answers already received are cached)"
            )
        return AugmentReport(**result, run_id=run_id)

    def augment_preview(
        self,
        *,
        config: ag.AugmentConfig | None = None,
        llm: LLMConfig | None = None,
        limit: int = 3,
        ids: list[str] | None = None,
        **overrides: Any,
    ) -> list[ParentPreview]:
        """Paraphrase a few parents and show what would be kept or rejected, writing no conversation.
        The answers are cached, so running for real afterwards does not pay for them again."""
        config, llm = make_configs(config, llm, **overrides)
        client = LLMClient(llm)
        model = client.default_model()
        plans = self._augment_plan(config, client, model, limit, ids)
        host = endpoint_host(llm.endpoint)
        responses = {
            k: Completion.from_dict(v)
            for k, v in self.store.llm_cache_get([c.key for pp in plans for c in pp.calls]).items()
        }
        entries = []
        for pp in plans:
            for c in pp.calls:
                if c.key not in responses:
                    responses[c.key] = client.chat(model, c.request)
                    entries.append(
                        {
                            "key": c.key,
                            "model": model,
                            "endpoint": host,
                            "request": c.request,
                            "response": responses[c.key].to_dict(),
                        }
                    )
        self.store.llm_cache_put(entries)
        pii = _pii_detector() if config.check_pii else None
        out = []
        for pp in plans:
            res = ag.build_children(
                pp, [responses[c.key] for c in pp.calls], config, model=model, endpoint=host, pii=pii
            )
            out.append(
                ParentPreview(
                    parent_id=pp.parent.id,
                    turns=[c.text for c in pp.calls],
                    answers=[responses[c.key].texts[0] if responses[c.key].texts else "" for c in pp.calls],
                    kept=[
                        {"variation": ch.variation, "turns": [ch.conversation.messages[c.turn].text for c in pp.calls]}
                        for ch in res.children
                    ],
                    rejected=[
                        {"variation": r.variation, "reason": r.reason, "text": r.text, "details": r.details}
                        for r in res.rejects
                    ],
                )
            )
        return out

    def llm_models(self, *, llm: LLMConfig | None = None, **overrides: Any) -> list[str]:
        """The model names an endpoint lists (checks that it is reachable and the key works)."""
        _, llm = make_configs(None, llm, **overrides)
        return LLMClient(llm).models()

    def augment_rejects(self, run_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """The variations a run did not keep, with their reason and text: what to look at when a
        run keeps few or none (e.g. every answer unparseable, or too close to its parent)."""
        return self.store.augment_run_rejects(run_id, limit=limit)

    def augment_families(self, *, limit: int = 20, offset: int = 0, status: str | None = None) -> FamilyPage:
        """Parents with paraphrases, newest first: each with its children and rejected variations."""
        page = self.store.augment_families(limit=limit, offset=offset, status=status)
        return FamilyPage(total=page["total"], parents=[Family(**p) for p in page["parents"]])

    def augment_family(self, parent_id: str) -> Family:
        return Family(**self.store.augment_family(parent_id))


class _Run:
    """One augment run: builds each parent's children as its answers arrive and saves them in
    batches (one transaction per batch: a parent's children, rejects and new cache rows always
    land together). A batch is written when it holds BATCH parents or its oldest parent has
    waited FLUSH_S seconds, so a crash loses at most that much work."""

    BATCH = 32
    FLUSH_S = 1.0

    def __init__(
        self,
        store: Store,
        run_id: str,
        config: ag.AugmentConfig,
        model: str,
        host: str,
        actor: str,
        pii: ag.PiiDetector | None,
        progress: Progress | None,
        total: int,
    ) -> None:
        self.store, self.run_id, self.config, self.model, self.host = store, run_id, config, model, host
        self.actor, self.pii, self.progress, self.total = actor, pii, progress, total
        self.similarity = ag.Similarity(config.ngram, config.num_perm)
        self.result: dict[str, Any] = {
            "parents": total, "requested": total * config.n, "generated": 0, "kept": 0, "rejected": {},
            "calls": 0, "cached_calls": 0,
        }  # fmt: skip
        self.rejected: Counter[str] = Counter()
        self.buffer: list[tuple[ag.ParentResult, dict[str, Any]]] = []
        self.oldest = 0.0
        self.done = 0
        self._error: LLMError | None = None

    def collect(self, pp: ag.ParentPlan, responses: dict[str, Completion], fresh: set[str]) -> None:
        res = ag.build_children(
            pp, [responses[c.key] for c in pp.calls], self.config, model=self.model, endpoint=self.host,
            similarity=self.similarity, pii=self.pii,
        )  # fmt: skip
        calls_key = "|".join(c.key for c in pp.calls)
        item = {
            "parent_id": pp.parent.id,
            "parent_revision": pp.parent.revision,
            "family_id": pp.parent.family_id,
            "children": [(ch.conversation, ch.provenance, ch.variation, ch.cache_keys) for ch in res.children],
            "rejects": [
                {"variation": r.variation, "calls_key": calls_key, "reason": r.reason, "text": r.text, "details": r.details}
                for r in res.rejects
            ],
            "cache_entries": [
                {"key": c.key, "model": self.model, "endpoint": self.host, "request": c.request, "response": responses[c.key].to_dict()}
                for c in pp.calls
                if c.key in fresh
            ],
        }  # fmt: skip
        if not self.buffer:
            self.oldest = time.monotonic()
        self.buffer.append((res, item))

    def flush(self, *, when_full: bool = False) -> None:
        if not self.buffer:
            return
        if when_full and len(self.buffer) < self.BATCH and time.monotonic() - self.oldest < self.FLUSH_S:
            return
        outcomes = self.store.augment_save(self.run_id, [item for _, item in self.buffer], actor=self.actor)
        for (res, _), outcome in zip(self.buffer, outcomes, strict=True):
            dupes = outcome.count("duplicate")
            self.result["generated"] += res.generated
            self.result["kept"] += len(res.children) - dupes
            self.rejected.update(r.reason for r in res.rejects)
            self.rejected["duplicate"] += dupes
        self.done += len(self.buffer)
        self.buffer.clear()
        if self.progress:
            self.progress(self.done, self.total)

    def finish(self) -> dict[str, Any]:
        self.result["rejected"] = {k: self.rejected[k] for k in sorted(self.rejected) if self.rejected[k]}
        return dict(self.result)

    def call_and_collect(
        self, waiting: list[ag.ParentPlan], client: LLMClient, concurrency: int, responses: dict[str, Completion]
    ) -> LLMError | None:
        """Send the uncached calls `concurrency` at a time; collect each parent when its calls are
        back. The first failure stops new calls; calls already in flight still finish and count."""
        requests = {c.key: c.request for pp in waiting for c in pp.calls if c.key not in responses}
        pending = {pp.parent.id: {c.key for c in pp.calls if c.key not in responses} for pp in waiting}
        by_key: dict[str, list[ag.ParentPlan]] = {}
        for pp in waiting:
            for key in pending[pp.parent.id]:
                by_key.setdefault(key, []).append(pp)
        fresh: set[str] = set()
        failed = threading.Event()

        def call(request: dict[str, Any]) -> Completion | None:
            # Checked by the worker itself: after a failure no further call starts, even one a
            # worker picks up before the main thread gets to cancel it.
            if failed.is_set():
                return None
            try:
                return client.chat(self.model, request)
            except LLMError:
                failed.set()
                raise

        with cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sift-llm") as pool:
            futures = {pool.submit(call, req): key for key, req in requests.items()}
            running = set(futures)
            try:
                self._wait_all(futures, running, by_key, pending, responses, fresh)
            except BaseException:
                # The caller stopped (a cancel in the app raises from the progress callback, or
                # Ctrl+C): no further call starts; the ones in flight end with their timeout.
                failed.set()
                for f in futures:
                    f.cancel()
                raise
        return self._error

    def _wait_all(
        self,
        futures: dict[cf.Future[Completion | None], str],
        running: set[cf.Future[Completion | None]],
        by_key: dict[str, list[ag.ParentPlan]],
        pending: dict[str, set[str]],
        responses: dict[str, Completion],
        fresh: set[str],
    ) -> None:
        error: LLMError | None = None
        self._error = None
        while running:
            if self.progress is not None:
                self.progress(self.done, self.total)  # also lets the caller stop between answers
            finished, running = cf.wait(running, timeout=self.FLUSH_S, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                key = futures[fut]
                try:
                    answer = fut.result()
                except cf.CancelledError:
                    continue
                except LLMError as e:
                    if error is None:
                        error = self._error = e
                        for f in running:
                            f.cancel()
                    continue
                if answer is None:
                    continue
                responses[key] = answer
                fresh.add(key)
                self.result["calls"] += 1
                for pp in by_key[key]:
                    left = pending[pp.parent.id]
                    left.discard(key)
                    if not left:
                        self.collect(pp, responses, fresh)
            self.flush(when_full=True)
