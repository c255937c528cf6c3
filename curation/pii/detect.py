"""Detection: run the analyzer over texts in batches (distinct texts once, spaCy `nlp.pipe`, forked
workers) and turn its results into spans and per-conversation findings."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from curation.pii.config import DENY_LIST_ENTITY, PiiConfig
from curation.pii.fields import message_fields
from curation.pii.recognizers import _recognizer_classes
from curation.pii.spans import Finding, Span, resolve_overlaps
from curation.records import Conversation, sha256_hex

_IDENTIFIER_RE = re.compile(r"\d|\w[._]\w|[/=@:<>{}\[\]\\|`$#]|[a-z][A-Z]{2}")


def looks_like_a_name(s: str) -> bool:
    """False for what an NER model calls a person or place but is code or jargon: identifiers
    (qdb.backup, eu-west-1), acronyms (JSON), product names with inner capitals (QuillDB)."""
    s = s.strip()
    if len(s) < 2 or _IDENTIFIER_RE.search(s):
        return False
    words = s.split()
    if len(words) == 1 and s.isupper() and len(s) <= 4:
        return False
    return any(c.isalpha() for c in s)


def _to_spans(results: Iterable[Any], text: str, config: PiiConfig, allow: set[str]) -> list[Span]:
    spans = []
    for r in results:
        if r.score < config.threshold(r.entity_type):
            continue
        if r.entity_type in ("PERSON", "LOCATION") and not looks_like_a_name(text[r.start : r.end]):
            continue
        if r.entity_type == "URL" and (
            (r.end < len(text) and (text[r.end].isalnum() or text[r.end] == "_"))
            or (r.start > 0 and (text[r.start - 1].isalnum() or text[r.start - 1] in "_."))
        ):
            continue  # "qdb.re" inside "qdb.replication": a dotted name cut at a TLD, not a URL
        if allow and text[r.start : r.end].strip().casefold() in allow:
            continue
        name = (r.recognition_metadata or {}).get("recognizer_name") or "unknown"
        spans.append(Span(r.start, r.end, r.entity_type, round(float(r.score), 4), name))
    return resolve_overlaps(spans)


def _analyze_chunk(analyzer: Any, texts: Sequence[str], config: PiiConfig) -> list[list[Span]]:
    entities = list(config.entities) + ([DENY_LIST_ENTITY] if config.deny_list else [])
    ad_hoc = [_recognizer_classes()["DenyListRecognizer"](config.deny_list)] if config.deny_list else None
    floor = min(config.threshold(e) for e in entities)
    allow = {a.strip().casefold() for a in config.allow_list if a.strip()}
    nlp = analyzer.nlp_engine
    out: list[list[Span]] = []
    for text, artifacts in nlp.process_batch(texts, language=config.language, batch_size=config.batch_size):
        results = analyzer.analyze(
            text=text,
            language=config.language,
            entities=entities,
            nlp_artifacts=artifacts,
            score_threshold=floor,
            ad_hoc_recognizers=ad_hoc,
        )
        out.append(_to_spans(results, text, config, allow))
    return out


def analyze_one(analyzer: Any, text: str, config: PiiConfig) -> list[Span]:
    """The baseline path: one `analyze()` call for one text, same filtering as `analyze_texts`."""
    entities = list(config.entities) + ([DENY_LIST_ENTITY] if config.deny_list else [])
    ad_hoc = [_recognizer_classes()["DenyListRecognizer"](config.deny_list)] if config.deny_list else None
    floor = min(config.threshold(e) for e in entities)
    allow = {a.strip().casefold() for a in config.allow_list if a.strip()}
    results = analyzer.analyze(
        text=text, language=config.language, entities=entities, score_threshold=floor, ad_hoc_recognizers=ad_hoc
    )
    return _to_spans(results, text, config, allow)


# Worker processes inherit the parent's analyzer through fork; they only read it.
_FORK_STATE: dict[str, Any] = {}


def _worker(job: tuple[int, list[str]]) -> tuple[int, list[list[Span]]]:
    i, texts = job
    return i, _analyze_chunk(_FORK_STATE["analyzer"], texts, _FORK_STATE["config"])


def analyze_texts(
    analyzer: Any,
    texts: Sequence[str],
    config: PiiConfig,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Span]]:
    """Spans per text, in input order. Identical texts are analysed once; the rest goes through
    spaCy's `nlp.pipe` in batches and, with `n_process > 1`, through forked worker processes."""
    index: dict[str, int] = {}
    unique: list[str] = []
    for t in texts:
        if t not in index:
            index[t] = len(unique)
            unique.append(t)
    todo = [i for i, t in enumerate(unique) if t.strip()]
    results: list[list[Span]] = [[] for _ in unique]
    chunk = max(config.batch_size * 4, 256)
    jobs = [(k, [unique[i] for i in todo[k : k + chunk]]) for k in range(0, len(todo), chunk)]
    done = 0
    for k, spans in _run_jobs(analyzer, config, jobs):
        for j, s in enumerate(spans):
            results[todo[k + j]] = s
        done += len(spans)
        if progress:
            progress(done, len(todo))
    return [results[index[t]] for t in texts]


def _run_jobs(
    analyzer: Any, config: PiiConfig, jobs: list[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[list[Span]]]]:
    import multiprocessing as mp

    if config.n_process <= 1 or len(jobs) <= 1 or "fork" not in mp.get_all_start_methods():
        for k, texts in jobs:
            yield k, _analyze_chunk(analyzer, texts, config)
        return
    _FORK_STATE.update(analyzer=analyzer, config=config)
    try:
        ctx = mp.get_context("fork")
        with ctx.Pool(min(config.n_process, len(jobs), os.cpu_count() or 1)) as pool:
            yield from pool.imap_unordered(_worker, jobs)
    finally:
        _FORK_STATE.clear()


def detect(
    analyzer: Any,
    conversations: Sequence[Conversation],
    config: PiiConfig,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Finding]]:
    """Findings per conversation, for the messages whose role the policy scans."""
    where: list[tuple[int, int, str, str, str]] = []
    for ci, conv in enumerate(conversations):
        for mi, m in enumerate(conv.messages):
            if config.policy(m.role) == "skip":
                continue
            for name, text in message_fields(m):
                where.append((ci, mi, name, text, m.role))
    spans = analyze_texts(analyzer, [w[3] for w in where], config, progress)
    out: list[list[Finding]] = [[] for _ in conversations]
    for (ci, mi, name, text, role), ss in zip(where, spans, strict=True):
        for s in ss:
            out[ci].append(
                Finding(
                    mi, name, s.start, s.end, s.entity, s.score, s.recognizer, sha256_hex(text[s.start : s.end]), role
                )
            )
    return out


def count_scanned(conversations: Sequence[Conversation], config: PiiConfig) -> int:
    return sum(1 for c in conversations for m in c.messages if config.policy(m.role) != "skip")
