"""PII use cases: scan current revisions, review findings (accept / dismiss / add / bulk accept),
redact into new revisions, and score detection against labelled files.

The Presidio analyzer takes seconds to build (spaCy model + recognizers): it is built once per
process and model (`analyzer()`), and shared by the CLI, the app and the Python API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curation import pii
from curation.records import Conversation, sha256_hex
from workbench.services.core import default_actor
from workbench.store import Store, StoreError

Progress = Callable[[int, int], None]

# model name -> AnalyzerEngine; one per process (the app, the CLI and a test session each build it once)
_ANALYZERS: dict[str, Any] = {}


def analyzer(model: str = pii.DEFAULT_MODEL) -> Any:
    if model not in _ANALYZERS:
        _ANALYZERS[model] = pii.build_analyzer(model)
    return _ANALYZERS[model]


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
    finding only in a role whose policy is `redact`, of an entity in scope, above its threshold."""
    if f["status"] in ("accepted", "added"):
        return True
    if f["status"] != "pending":
        return False
    return (
        config.policy(f["role"]) == "redact"
        and f["entity"] in (*config.entities, pii.DENY_LIST_ENTITY)
        and f["score"] >= config.threshold(f["entity"])
    )


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
        targets = self._pii_targets(ids)
        convs = [c for _, _, c in targets]
        started = time.perf_counter()
        found = pii.detect(analyzer(config.model), convs, config, progress)
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
        run_id = f"pii-{uuid.uuid4().hex[:12]}"
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

    def pii_scan(self, **kwargs: Any) -> dict[str, Any]:
        """Detect PII in the current revision of every conversation (or `ids`) and store the
        findings for review. Returns the `sift pii-scan --json` object: {"messages_scanned",
        "findings": {ENTITY: n}, "conversations_with_findings", "seconds", "run_id"}."""
        return self._pii_scan(**kwargs)[0]

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
        **overrides: Any,
    ) -> dict[str, Any]:
        """Scan, then write a redacted revision of every conversation with findings to apply (see
        `_should_apply`), all in one transaction. With `dry_run` nothing is written and the counts
        say what would happen. Returns the `sift redact --json` object:
        {"messages_scanned", "findings": {ENTITY: n}, "conversations_redacted"}."""
        config = make_config(config, **overrides)
        actor = actor or default_actor()
        # Detection (slow) runs before the store is touched; the scan, its run and the redacted
        # revisions then land in one transaction, so a crash leaves the store as it was.
        scan, targets, found = self._pii_scan(config=config, ids=ids, actor=actor, dry_run=True, progress=progress)
        from presidio_anonymizer import AnonymizerEngine

        engine = AnonymizerEngine()
        if not dry_run:
            with self.store.db.transaction() as con:
                run_id = self._pii_save_scan(scan, targets, found, config, actor, con)
                stored = self.store.pii_revision_findings([(c, r) for c, r, _ in targets], con=con)
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
            stored = {
                (cid, rev): [{**f.to_dict(), "status": "pending", "id": None} for f in fs]
                for (cid, rev, _), fs in zip(targets, found, strict=True)
            }
            reviewed = self.store.pii_revision_findings([(c, r) for c, r, _ in targets])
            for key, fs in reviewed.items():
                done = {
                    (f["message_index"], f["field"], f["start"], f["end"], f["entity"]): f
                    for f in fs
                    if f["status"] != "pending"
                }
                keep = [
                    f
                    for f in stored[key]
                    if (f["message_index"], f["field"], f["start"], f["end"], f["entity"]) not in done
                ]
                stored[key] = keep + list(done.values())
            items = _redactions(targets, stored, config, engine)
        return {
            "messages_scanned": scan["messages_scanned"],
            "findings": scan["findings"],
            "conversations_redacted": len(items),
        }

    # ------------------------------------------------------------ review

    def pii_findings(self, **filters: Any) -> dict[str, Any]:
        return self.store.pii_findings(**filters)

    def pii_queue(self, **filters: Any) -> dict[str, Any]:
        """Findings like `pii_findings`, each with the text of the field it points into (`text`), for
        a reviewer to see the span in context; `text` is None if the span no longer matches."""
        r = self.store.pii_findings(**filters)
        convs: dict[tuple[str, int], Conversation] = {}
        for f in r["findings"]:
            key = (f["conversation_id"], f["revision"])
            if key not in convs:
                convs[key] = Conversation.from_dict(self.store.get_conversation(*key))
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
        return r

    def pii_review(self, finding_ids: Sequence[int], status: str, *, actor: str | None = None) -> int:
        """accept / dismiss / reset findings of current revisions (status accepted, dismissed, pending)."""
        return self.store.pii_set_status(finding_ids, status, actor=actor or default_actor())

    def pii_bulk_accept(self, entity: str, min_score: float, *, actor: str | None = None) -> int:
        if entity not in (*pii.ENTITIES, pii.DENY_LIST_ENTITY):
            raise pii.PiiError(f"unknown entity {entity!r} (use {', '.join(pii.ENTITIES)})")
        return self.store.pii_bulk_accept(entity=entity, min_score=min_score, actor=actor or default_actor())

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
    ) -> dict[str, Any]:
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
        return self.store.pii_finding(fid)

    def pii_overview(self) -> dict[str, Any]:
        return self.store.pii_overview()

    # ------------------------------------------------------------ evaluation

    def pii_eval(self, path: str | Path, *, config: pii.PiiConfig | None = None, **overrides: Any) -> dict[str, Any]:
        """Score detection against gold spans: a presidio-research JSON file (`full_text`, `spans`)
        or a text file with inline tags (`<name>…</name>`, one text per line). Returns
        {"overall": {precision, recall, f2}, "entities": {E: {precision, recall, f2, support}},
        "texts", "docs_per_second"}; `overall` is binary (PII vs not)."""
        return {k: v for k, v in self.pii_eval_details(path, config=config, **overrides).items() if k in _EVAL_KEYS}

    def pii_eval_details(
        self, path: str | Path, *, config: pii.PiiConfig | None = None, **overrides: Any
    ) -> dict[str, Any]:
        config = make_config(config, **overrides)
        texts, gold = load_gold(path)
        engine = analyzer(config.model)
        started = time.perf_counter()
        predicted = pii.analyze_texts(engine, texts, config)
        seconds = time.perf_counter() - started
        scores = pii.score_spans(gold, predicted, config.entities)
        return {
            **scores,
            "texts": len(texts),
            "docs_per_second": round(len(texts) / seconds, 2) if seconds > 0 else None,
            "seconds": round(seconds, 3),
        }


_EVAL_KEYS = ("overall", "entities", "texts", "docs_per_second")


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
    findings it applies and the dismissed ones it carries over (their spans shifted)."""
    items = []
    for cid, rev, conv in targets:
        fs = stored.get((cid, rev), [])
        apply = [f for f in fs if _should_apply(f, config)]
        if not apply:
            continue
        red = pii.redact_conversation(conv, [_finding(f) for f in apply], config, key=cid, anonymizer=engine)
        moved = []
        for f in fs:
            if f["status"] == "dismissed" and f.get("id") is not None:
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
