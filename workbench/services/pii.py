"""PII use cases: scan current revisions, review findings (accept / dismiss / add / bulk accept),
redact into new revisions, and score detection against labelled files.

The Presidio analyzer takes seconds to build (spaCy model + recognizers): it is built once per
process and model (`analyzer()`), and shared by the CLI, the app and the Python API.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curation import pii
from curation.progress import Progress
from curation.records import Conversation, sha256_hex
from workbench.services.core import default_actor
from workbench.services.pii_results import (
    AddedFinding,
    AllowList,
    BulkReview,
    FindingPage,
    PiiEvalDetail,
    PiiEvalReport,
    PiiOverview,
    PiiScanReport,
    PiiScores,
    RedactionReport,
)
from workbench.store import Store, StoreError
from workbench.store.stage_runs import new_stage_run_id

# model name -> AnalyzerEngine; one per process (the app, the CLI and a test session each build it once)
_ANALYZERS: dict[str, Any] = {}


def analyzer(model: str = pii.DEFAULT_MODEL) -> Any:
    if model not in _ANALYZERS:
        _ANALYZERS[model] = pii.build_analyzer(model)
    return _ANALYZERS[model]


def vanilla_analyzer(model: str = pii.DEFAULT_MODEL) -> Any:
    """Vanilla Presidio over the same spaCy model, for comparisons (built once per process)."""
    key = f"vanilla:{model}"
    if key not in _ANALYZERS:
        _ANALYZERS[key] = pii.build_vanilla_analyzer(model)
    return _ANALYZERS[key]


def make_config(config: pii.PiiConfig | None = None, **overrides: Any) -> pii.PiiConfig:
    """A config from a base (default: the defaults) with the non-None overrides applied."""
    base = config or pii.PiiConfig()
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in fields:
            raise pii.PiiError(f"unknown PII option {k!r}")
        if k == "roles":
            v = {**base.roles, **v}
        fields[k] = tuple(v) if isinstance(v, list) else v
    return pii.PiiConfig(**fields)


def _entity_counts(findings: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        e = f.entity if hasattr(f, "entity") else f["entity"]
        out[e] = out.get(e, 0) + 1
    return dict(sorted(out.items()))


def _should_apply(f: dict[str, Any], config: pii.PiiConfig) -> bool:
    """Which findings a redaction replaces: whatever a reviewer accepted or added; a pending
    finding only in a role whose policy is `redact`, of an entity in scope, scored at or above its
    entity's auto-redact floor (names, places, addresses have none: they wait for a reviewer)."""
    if f["status"] in ("accepted", "added"):
        return True
    if f["status"] != "pending":
        return False
    floor = config.auto_floor(f["entity"])
    return (
        floor is not None
        and config.policy(f["role"]) == "redact"
        and f["entity"] in (*config.entities, pii.DENY_LIST_ENTITY)
        and f["score"] >= floor
    )


def _samples(items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to `n` before/after excerpts of what a redaction changes, one entity after another."""
    pool = [s for it in items for s in it["samples"]]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for s in pool:  # one per entity first, then the rest in order
        if s["entity"] not in seen and len(out) < n:
            out.append(s)
            seen.add(s["entity"])
    for s in pool:
        if len(out) >= n:
            break
        if s not in out:
            out.append(s)
    return out


def _excerpt(text: str, start: int, end: int, pad: int = 40) -> str:
    a, b = max(0, start - pad), min(len(text), end + pad)
    return ("…" if a else "") + text[a:b] + ("…" if b < len(text) else "")


class PiiService:
    store: Store

    # ------------------------------------------------------------ scan

    def _pii_targets(self, ids: Sequence[str] | None) -> list[tuple[str, int, Conversation]]:
        out = []
        for batch in self.store.iter_current(list(ids) if ids else None):
            for cid, rev, content in batch:
                out.append((cid, int(rev), Conversation.from_json(content)))
        if ids:
            missing = set(ids) - {c for c, _, _ in out}
            if missing:
                raise StoreError(f"no conversation {sorted(missing)[0]!r}")
        return out

    def _pii_scan(
        self,
        *,
        config: pii.PiiConfig | None = None,
        ids: Sequence[str] | None = None,
        targets: list[tuple[str, int, Conversation]] | None = None,
        actor: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        **overrides: Any,
    ) -> tuple[dict[str, Any], list[tuple[str, int, Conversation]], list[list[pii.Finding]]]:
        """Detect PII in the current revision of every conversation (or `ids`) and store the
        findings (pending; reviewed findings of the same revision are kept), in one transaction.
        Returns the report, the (id, revision, conversation) scanned and their findings."""
        config = make_config(config, **overrides)
        actor = actor or default_actor()
        if targets is None:
            targets = self._pii_targets(ids)
        config = self._with_store_allow_list(config)
        convs = [c for _, _, c in targets]
        started = time.perf_counter()
        # nothing to scan (redact reusing a stored scan): no analyzer to build
        found = pii.detect(analyzer(config.model), convs, config, progress) if convs else []
        seconds = time.perf_counter() - started
        result = {
            "messages_scanned": sum(pii.count_scanned([c], config) for c in convs),
            "findings": _entity_counts([f for fs in found for f in fs]),
            "conversations_with_findings": sum(1 for fs in found if fs),
            "seconds": round(seconds, 3),
        }
        if not dry_run:
            result["run_id"] = self._pii_save_scan(result, targets, found, config, actor)
        return result, targets, found

    def _pii_save_scan(
        self,
        result: dict[str, Any],
        targets: list[tuple[str, int, Conversation]],
        found: list[list[pii.Finding]],
        config: pii.PiiConfig,
        actor: str,
        con: Any = None,
    ) -> str:
        """The scan's run and findings, in one transaction (or in the caller's, `con`): a crash
        leaves neither. Returns the run id."""
        run_id = new_stage_run_id("pii")
        scanned = [(cid, rev, pii.count_scanned([c], config)) for cid, rev, c in targets]
        flat = [
            {**f.to_dict(), "conversation_id": cid, "revision": rev}
            for (cid, rev, _), fs in zip(targets, found, strict=True)
            for f in fs
        ]
        with self.store.db.transaction(con) as tx:
            self.store.start_stage_run(run_id, pii.STAGE, config.to_dict(), actor=actor, con=tx)
            self.store.pii_save_scan(run_id, scanned, flat, actor=actor, stats=result, con=tx)
        return run_id

    def _with_store_allow_list(self, config: pii.PiiConfig) -> pii.PiiConfig:
        """The config with the store's allow-list (terms reviewers dismissed and remembered) added."""
        terms = [t["term"] for t in self.store.pii_allow_list()]
        if not terms:
            return config
        return make_config(config, allow_list=list(dict.fromkeys([*config.allow_list, *terms])))

    def pii_scan(self, **kwargs: Any) -> PiiScanReport:
        """Detect PII in the current revision of every conversation (or `ids`) and store the
        findings for review. Returns the `sift pii-scan --json` object: {"messages_scanned",
        "findings": {ENTITY: n}, "conversations_with_findings", "seconds", "run_id"}."""
        return PiiScanReport(**self._pii_scan(**kwargs)[0])

    pii_scan_report = pii_scan

    # ------------------------------------------------------------ redact

    def redact(
        self,
        *,
        config: pii.PiiConfig | None = None,
        ids: Sequence[str] | None = None,
        actor: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        rescan: bool = False,
        samples: int = 5,
        **overrides: Any,
    ) -> RedactionReport:
        """Write a redacted revision of every conversation with findings to apply (see
        `_should_apply`: reviewed findings, and pending ones at or above their entity's auto-redact
        floor), all in one transaction. The findings of a revision scanned before are reused (the
        scan the user just reviewed); only revisions never scanned (or all, with `rescan`) are
        scanned now. With `dry_run` nothing is written. Returns the `sift redact --json` object:
        {"messages_scanned", "findings": {ENTITY: n}, "conversations_redacted", "reused_scan",
        "spans_redacted": {ENTITY: n}, "pending_left": {ENTITY: n}, "samples": [{conversation_id,
        message_index, field, entity, before, after}] (dry run only)}."""
        config = make_config(config, **overrides)
        actor = actor or default_actor()
        targets = self._pii_targets(ids)
        scanned = set() if rescan else self.store.pii_scanned([(c, r) for c, r, _ in targets])
        todo = [t for t in targets if (t[0], t[1]) not in scanned]
        # Detection (slow) runs before the store is touched; the scan, its run and the redacted
        # revisions then land in one transaction, so a crash leaves the store as it was.
        scan, _, found = self._pii_scan(config=config, targets=todo, actor=actor, dry_run=True, progress=progress)
        from presidio_anonymizer import AnonymizerEngine

        engine = AnonymizerEngine()
        pairs = [(c, r) for c, r, _ in targets]
        if not dry_run:
            with self.store.db.transaction() as con:
                run_id = self._pii_save_scan(scan, todo, found, config, actor, con)
                stored = self.store.pii_revision_findings(pairs, con=con)
                items = _redactions(targets, stored, config, engine)
                if items:
                    self.store.pii_apply_redactions(
                        items,
                        actor=actor,
                        run_id=run_id,
                        parameters={"operator": config.operator, "entities": list(config.entities)},
                        con=con,
                    )
        else:
            stored = self.store.pii_revision_findings(pairs)
            for (cid, rev, _), fs in zip(todo, found, strict=True):
                done = {
                    (f["message_index"], f["field"], f["start"], f["end"], f["entity"]): f
                    for f in stored[(cid, rev)]
                    if f["status"] != "pending"
                }
                fresh = [
                    {**f.to_dict(), "status": "pending", "id": None}
                    for f in fs
                    if (f.message_index, f.field, f.start, f.end, f.entity) not in done
                ]
                stored[(cid, rev)] = fresh + list(done.values())
            items = _redactions(targets, stored, config, engine)
        applied: dict[str, int] = {}
        for it in items:
            for e in it["entities"]:
                applied[e] = applied.get(e, 0) + 1
        left = _entity_counts(
            [f for fs in stored.values() for f in fs if f["status"] == "pending" and not _should_apply(f, config)]
        )
        out = {
            "messages_scanned": scan["messages_scanned"],
            "findings": _entity_counts([f for fs in stored.values() for f in fs]),
            "conversations_redacted": len(items),
            "reused_scan": len(targets) - len(todo),
            "spans_redacted": dict(sorted(applied.items())),
            "pending_left": left,
        }
        if dry_run:
            out["samples"] = _samples(items, samples)
        return RedactionReport(**out)

    # ------------------------------------------------------------ review

    def pii_findings(self, **filters: Any) -> FindingPage:
        return FindingPage(**self.store.pii_findings(**filters))

    def pii_queue(self, **filters: Any) -> FindingPage:
        """Findings like `pii_findings`, each with the text of the field it points into (`text`), for
        a reviewer to see the span in context; `text` is None if the span no longer matches."""
        r = self.store.pii_findings(**filters)
        convs: dict[tuple[str, int], Conversation] = {}
        for f in r["findings"]:
            key = (f["conversation_id"], f["revision"])
            if key not in convs:
                convs[key] = self.store.conversation(*key)
            m = convs[key].messages[f["message_index"]] if f["message_index"] < len(convs[key].messages) else None
            text = None
            if m is not None:
                try:
                    t = pii.field_text(m, f["field"])
                except pii.PiiError:
                    t = ""
                if f["end"] <= len(t) and sha256_hex(t[f["start"] : f["end"]]) == f["text_sha256"]:
                    text = t
            f["text"] = text
        return FindingPage(**r)

    def pii_review(self, finding_ids: Sequence[int], status: str, *, actor: str | None = None) -> int:
        """accept / dismiss / reset findings of current revisions (status accepted, dismissed, pending)."""
        return self.store.pii_set_status(finding_ids, status, actor=actor or default_actor())

    def pii_bulk_accept(self, entity: str, min_score: float, *, actor: str | None = None) -> int:
        if entity not in (*pii.ENTITIES, pii.DENY_LIST_ENTITY):
            raise pii.PiiError(f"unknown entity {entity!r} (use {', '.join(pii.ENTITIES)})")
        return self.store.pii_bulk_accept(entity=entity, min_score=min_score, actor=actor or default_actor())

    def pii_bulk_review(
        self,
        status: str,
        *,
        entity: str | None = None,
        text: str | None = None,
        recognizer: str | None = None,
        min_score: float | None = None,
        max_score: float | None = None,
        remember: bool = False,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> BulkReview:
        """Accept or dismiss every pending finding of current revisions matching all the selectors:
        entity, exact span text ("Java": matched through the stored sha256, the text is not kept),
        recognizer, score range. `remember` (dismiss with `text`): add the text to the store's
        allow-list, so later scans never report it. `dry_run`: count only, for a confirmation.
        Returns {"matched", "updated", "status", "by_entity", "remembered"}."""
        if entity is not None and entity not in (*pii.ENTITIES, pii.DENY_LIST_ENTITY):
            raise pii.PiiError(f"unknown entity {entity!r} (use {', '.join(pii.ENTITIES)})")
        for name, v in (("min_score", min_score), ("max_score", max_score)):
            if v is not None and not 0.0 <= v <= 1.0:
                raise pii.PiiError(f"{name}={v} is outside 0..1")
        if remember and not text:
            raise pii.PiiError("remembering a dismissal needs the exact text (--text)")
        r = self.store.pii_bulk_review(
            status,
            actor=actor or default_actor(),
            entity=entity,
            text_sha256=sha256_hex(text) if text else None,
            recognizer=recognizer,
            min_score=min_score,
            max_score=max_score,
            remember=text if remember else None,
            dry_run=dry_run,
        )
        return BulkReview(**r, remembered=text if remember and not dry_run else None)

    def pii_allow_list(self) -> AllowList:
        return AllowList(self.store.pii_allow_list())

    def pii_allow_remove(self, term: str) -> int:
        return self.store.pii_allow_remove(term)

    def pii_add(
        self,
        conversation_id: str,
        message_index: int,
        start: int,
        end: int,
        entity: str,
        *,
        field: str = "content",
        actor: str | None = None,
    ) -> AddedFinding:
        """A span the detector missed, on the conversation's current revision."""
        if entity not in (*pii.ENTITIES, pii.DENY_LIST_ENTITY):
            raise pii.PiiError(f"unknown entity {entity!r} (use {', '.join(pii.ENTITIES)})")
        current = self.store.get_conversation(conversation_id)
        conv = Conversation.from_dict(current)
        if not 0 <= message_index < len(conv.messages):
            raise pii.PiiError(f"conversation {current['id']} has no message {message_index}")
        m = conv.messages[message_index]
        text = pii.field_text(m, field)
        if not 0 <= start < end <= len(text):
            raise pii.PiiError(f"span {start}:{end} is outside message {message_index} {field} (0:{len(text)})")
        fid = self.store.pii_add_finding(
            {
                "conversation_id": current["id"],
                "revision": current["revision"],
                "message_index": message_index,
                "field": field,
                "role": m.role,
                "start": start,
                "end": end,
                "entity": entity,
                "text_sha256": sha256_hex(text[start:end]),
            },
            actor=actor or default_actor(),
        )
        return AddedFinding(self.store.pii_finding(fid))

    def pii_overview(self) -> PiiOverview:
        return PiiOverview(**self.store.pii_overview())

    # ------------------------------------------------------------ evaluation

    def pii_eval(
        self, path: str | Path, *, config: pii.PiiConfig | None = None, vanilla: bool = False, **overrides: Any
    ) -> PiiEvalReport:
        """Score detection against gold spans: a presidio-research JSON file (`full_text`, `spans`)
        or a text file with inline tags (`<name>…</name>`, one text per line). Returns
        {"overall": {precision, recall, f2}, "entities": {E: {precision, recall, f2, support}},
        "texts", "docs_per_second", "clean_texts", "clean_finding_rate", "clean_person_findings",
        "tokens": {precision, recall, f2, gold_tokens, predicted_tokens, ignored_tokens}};
        `overall` is binary (PII vs not) per gold span (overlap >= 0.5), `tokens` binary per token
        (presidio-research's way); the clean figures count texts with no gold span at all. With
        `vanilla`, "vanilla" holds the same scores for vanilla Presidio over the same texts."""
        d = self.pii_eval_details(path, config=config, **overrides)
        out: dict[str, Any] = {k: v for k, v in d.to_dict().items() if k in _EVAL_KEYS}
        if vanilla:
            config = make_config(config, **overrides)
            texts, gold = load_gold(path)
            predicted = pii.predict_vanilla(vanilla_analyzer(config.model), texts, config.entities)
            scores = pii.score_spans(gold, predicted, config.entities)
            scores["tokens"] = pii.score_tokens(texts, gold, predicted, config.entities)
            out["vanilla"] = PiiScores(**{k: v for k, v in scores.items() if k in _EVAL_KEYS})
        return PiiEvalReport(**out)

    def pii_eval_details(
        self, path: str | Path, *, config: pii.PiiConfig | None = None, **overrides: Any
    ) -> PiiEvalDetail:
        config = make_config(config, **overrides)
        texts, gold = load_gold(path)
        engine = analyzer(config.model)
        started = time.perf_counter()
        predicted = pii.analyze_texts(engine, texts, config)
        seconds = time.perf_counter() - started
        scores = pii.score_spans(gold, predicted, config.entities)
        return PiiEvalDetail(
            **scores,
            tokens=pii.score_tokens(texts, gold, predicted, config.entities),
            texts=len(texts),
            docs_per_second=round(len(texts) / seconds, 2) if seconds > 0 else None,
            seconds=round(seconds, 3),
        )


_EVAL_KEYS = (
    "overall",
    "entities",
    "texts",
    "docs_per_second",
    "clean_texts",
    "clean_finding_rate",
    "clean_person_findings",
    "tokens",
)


def load_gold(path: str | Path) -> tuple[list[str], list[list[pii.GoldSpan]]]:
    p = Path(path)
    if not p.exists():
        raise pii.PiiError(f"no such file: {p}")
    if p.suffix == ".json":
        return pii.load_presidio_research(p)
    texts, gold = [], []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            t, g = pii.parse_inline_tags(line)
            texts.append(t)
            gold.append(g)
    if not texts:
        raise pii.PiiError(f"{p}: no texts")
    return texts, gold


def _redactions(
    targets: list[tuple[str, int, Conversation]],
    stored: dict[tuple[str, int], list[dict[str, Any]]],
    config: pii.PiiConfig,
    engine: Any,
) -> list[dict[str, Any]]:
    """The redacted revision of every target with findings to apply (see `_should_apply`), with the
    findings it applies and the dismissed and still-pending ones it carries over (spans shifted)."""
    items = []
    for cid, rev, conv in targets:
        fs = stored.get((cid, rev), [])
        apply = [f for f in fs if _should_apply(f, config)]
        if not apply:
            continue
        red = pii.redact_conversation(conv, [_finding(f) for f in apply], config, key=cid, anonymizer=engine)
        samples = []
        for (mi, name), reps in sorted(red.replacements.items()):
            old = pii.field_text(conv.messages[mi], name)
            new_text = pii.field_text(red.conversation.messages[mi], name)
            for r in reps[:1]:
                samples.append(
                    {
                        "conversation_id": cid,
                        "message_index": mi,
                        "field": name,
                        "entity": r.entity,
                        "before": _excerpt(old, r.old_start, r.old_end),
                        "after": _excerpt(new_text, r.new_start, r.new_end),
                    }
                )
        moved = []
        for f in fs:
            # dismissed findings, and pending ones below their auto-redact floor, move to the new
            # revision: nobody reviews a dismissal twice, and no pending finding is lost
            if f["status"] in ("dismissed", "pending") and f.get("id") is not None and f not in apply:
                new = pii.shift(f["start"], f["end"], red.replacements.get((f["message_index"], f["field"]), []))
                if new is not None:
                    moved.append((f["id"], *new))
        items.append(
            {
                "conversation_id": cid,
                "revision": rev,
                "conversation": red.conversation,
                "applied": [f["id"] for f in apply if f.get("id") is not None],
                "moved": moved,
                "messages": pii.count_scanned([red.conversation], config),
                "entities": [r.entity for reps in red.replacements.values() for r in reps],
                "samples": samples,
            }
        )
    return items


def _finding(f: dict[str, Any]) -> pii.Finding:
    return pii.Finding(
        f["message_index"],
        f["field"],
        f["start"],
        f["end"],
        f["entity"],
        float(f["score"]),
        f["recognizer"],
        f["text_sha256"],
        f.get("role") or "",
    )


__all__ = ["PiiService", "analyzer", "load_gold", "make_config"]
