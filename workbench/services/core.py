"""Use cases over the store: what the CLI, the app and the Python API all call."""

from __future__ import annotations

import builtins
import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.formats import ALPACA_JOIN, FileReadError, FileStream, open_file, parse_file
from curation.records import Conversation, Message, Provenance, file_sha256
from workbench.services.results import Result, optional
from workbench.store import Store, StoreError


@dataclass(frozen=True)
class ImportedFile(Result):
    """One file that landed (in its own transaction)."""

    path: str
    format: str
    rows: int
    imported: int
    already_present: int
    quarantined: int
    encoding: str


@dataclass(frozen=True)
class UnreadableFile(Result):
    """One file that `each=True` skipped, with why."""

    path: str
    error: str


@dataclass(frozen=True)
class ImportTotals(Result):
    rows: int
    imported: int
    already_present: int
    quarantined: int
    failed_files: int | None = optional()  # only with `each=True`


@dataclass(frozen=True)
class ImportReport(Result):
    files: builtins.list[ImportedFile | UnreadableFile]
    totals: ImportTotals


@dataclass(frozen=True)
class ImportPreview(Result):
    """`conversations`: `{"line", "messages": [{"role", "text"}], "metadata"}` each;
    `quarantined`: `{"line", "field", "message"}` each."""

    format: str
    conversations: builtins.list[dict[str, Any]]
    quarantined: builtins.list[dict[str, Any]]


@dataclass(frozen=True)
class Stats(Result):
    conversations: int
    revisions: int
    quarantined: int
    sources: int
    by_status: dict[str, int]


@dataclass(frozen=True)
class ConversationView(Result):
    """One conversation as `sift show` prints it. `messages`, `tools`, `flags`, `provenance` and
    `history` are the stored JSON. Where validation measured the shown revision, `tokens`,
    `trained_tokens` and `turns` (tokens and trained tokens per message) are set — `tokens` None
    when it could not be measured — and `measured` is True; otherwise the three keys are absent."""

    id: str
    status: str
    revision: int
    current_revision: int
    family_id: str | None
    messages: builtins.list[dict[str, Any]]
    tools: builtins.list[dict[str, Any]]
    metadata: dict[str, Any]
    tags: builtins.list[str]
    flags: builtins.list[dict[str, Any]]
    provenance: builtins.list[dict[str, Any]]
    history: builtins.list[dict[str, Any]]
    created_at: str
    updated_at: str
    tokens: int | None = None
    trained_tokens: int | None = None
    turns: builtins.list[dict[str, int]] | None = None

    @property
    def measured(self) -> bool:
        return self.turns is not None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not self.measured:  # tokens may be None when measured: presence follows `turns`
            for k in ("tokens", "trained_tokens", "turns"):
                del d[k]
        return d


@dataclass(frozen=True)
class ConversationPage(Result):
    """A page of `list`: rows `{"id", "status", "revision", "messages", "tags", "updated_at",
    "preview"}`; `next_after` is the keyset cursor of the next page (None on the last)."""

    total: int
    total_capped: bool
    next_after: builtins.list[Any] | None
    conversations: builtins.list[dict[str, Any]]


@dataclass(frozen=True)
class QuarantinePage(Result):
    """Rows `{"file", "line", "index", "field", "message", "raw", "source_id"}`."""

    total: int
    rows: builtins.list[dict[str, Any]]


def default_actor() -> str:
    return os.environ.get("SIFT_ACTOR") or getpass.getuser() or "unknown"


def storable_path(path: Path) -> Path:
    """The path as the store records it: a file name that is not UTF-8 (bytes Python keeps as
    surrogates) gets `\\xff` escapes instead, so recording it cannot fail."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return Path(os.fsencode(path.resolve()).decode("utf-8", "backslashreplace"))
    return path


class ImportIncomplete(StoreError):
    """A multi-file import stopped at one file after committing the files before it."""

    def __init__(self, path: Path, cause: BaseException, committed: builtins.list[ImportedFile]) -> None:
        done = "; ".join(f"{f.path} ({f.imported} imported, {f.quarantined} quarantined)" for f in committed)
        super().__init__(
            f"{path}: not imported ({cause}); nothing of it was written. "
            f"Already committed, each in its own transaction: {done}"
        )
        self.committed = committed


class CoreService:
    store: Store

    def import_files(
        self,
        paths: list[str | Path],
        *,
        format: str = "auto",
        actor: str | None = None,
        licence: str | None = None,
        names: list[str] | None = None,
        column_map: Any = None,
        each: bool = False,
        alpaca_join: str = ALPACA_JOIN,
    ) -> ImportReport:
        """Import files, each in its own transaction. `alpaca_join` goes between an Alpaca row's
        instruction and input (a blank line by default; LLaMA-Factory uses one newline).

        Every file is opened before anything is written, so a missing, unreadable or
        undetectable file stops the whole command with nothing changed — unless `each`: then every
        file is reported on its own and an unreadable one (`{"path", "error"}` in `files`) does not
        stop the others. JSONL and Parquet rows then stream in bounded chunks (memory independent
        of the file's size). When writing a later file fails (disk full, a busy store, a Parquet
        file broken past its first rows), the files committed before it stay and the error names
        each of them.
        `names`: the names the user knows the files by (uploads), recorded instead of the paths.
        `column_map`: a `curation.column_map.ColumnMap`, or a callable giving one per file name
        (e.g. a dataset_info.json), renaming columns and roles before the dialect's mapper.
        """
        from curation.formats import FileReadError

        actor = actor or default_actor()
        shown = list(names) if names is not None else [None] * len(paths)
        # Every file is opened (its dialect detected, a JSON array parsed) before anything is
        # written; rows then stream into the store chunk by chunk, one transaction per file.
        parsed: list[tuple[FileStream, str, str | None] | UnreadableFile] = []
        for p, name in zip(paths, shown, strict=True):
            path = Path(p)
            try:
                cmap = column_map(name or path.name) if callable(column_map) else column_map
                pf = open_file(path, format, column_map=cmap, alpaca_join=alpaca_join)
                pf.path = storable_path(path)  # reading goes on from the real path
                parsed.append((pf, file_sha256(path), name))
            except FileReadError as e:
                if not each:
                    raise
                msg = str(e) if name is None else str(e).replace(str(path), name)
                parsed.append(UnreadableFile(path=name or str(path), error=msg))
        files: builtins.list[ImportedFile | UnreadableFile] = []
        for x in parsed:
            if isinstance(x, UnreadableFile):
                files.append(x)
                continue
            pf, sha, shown_name = x
            try:
                f = self.store.import_stream(pf, sha256=sha, actor=actor, licence=licence, display_name=shown_name)
            except Exception as e:
                committed = [f for f in files if isinstance(f, ImportedFile)]
                if not committed:
                    raise
                raise ImportIncomplete(Path(shown_name) if shown_name else pf.path, e, committed) from e
            files.append(ImportedFile(**f, encoding=pf.encoding))
        done = [f for f in files if isinstance(f, ImportedFile)]
        totals = ImportTotals(
            rows=sum(f.rows for f in done),
            imported=sum(f.imported for f in done),
            already_present=sum(f.already_present for f in done),
            quarantined=sum(f.quarantined for f in done),
            failed_files=len(files) - len(done) if each else None,
        )
        return ImportReport(files=files, totals=totals)

    def import_preview(
        self, path: str | Path, *, format: str = "auto", column_map: Any = None, rows: int = 5
    ) -> ImportPreview:
        """The first `rows` rows of a file as Sift would map them (nothing is written)."""
        pf = parse_file(Path(path), format, column_map=column_map, limit=rows)
        return ImportPreview(
            format=pf.format,
            conversations=[
                {
                    "line": m.line,
                    "messages": [{"role": msg.role, "text": msg.text} for msg in m.conversation.messages],
                    "metadata": dict(m.conversation.metadata),
                }
                for m in pf.mapped
            ],
            quarantined=[{"line": q.line, "field": q.field, "message": q.message} for q in pf.quarantined],
        )

    def stats(self) -> Stats:
        return Stats(**self.store.stats())

    def show(self, conversation_id: str, revision: int | None = None) -> ConversationView:
        """One conversation; where validation measured its revisions (under the last run's tokenizer
        and template), the shown revision and each revision in `history` carry `tokens`,
        `trained_tokens` and per-turn counts (`turns`: tokens and trained tokens of each message)."""
        d = self.store.get_conversation(conversation_id, revision)
        run = self.store.latest_validate_run()
        identity = ((run or {}).get("config") or {}).get("identity")
        if identity:
            results = self.store.validate_results_of(conversation_id, identity)
            if d["revision"] in results:
                d.update(_token_counts(results[d["revision"]]))
            for h in d["history"]:
                if h.get("kind") == "revision" and h.get("revision") in results:
                    h.update(_token_counts(results[h["revision"]]))
        return ConversationView(**d)

    def list(self, **filters: Any) -> ConversationPage:
        return ConversationPage(**self.store.list_conversations(**filters))

    def quarantine(self, *, limit: int = 100, offset: int = 0, source: str | None = None) -> QuarantinePage:
        return QuarantinePage(**self.store.quarantine_rows(limit=limit, offset=offset, source=source))

    def sources(self) -> builtins.list[dict[str, Any]]:
        return self.store.sources()

    def set_status(
        self,
        ids: builtins.list[str],
        status: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> int:
        if status == "rejected" and reason is not None and not reason.strip():
            raise StoreError("a rejection needs a reason")
        return self.store.set_status(
            ids, status, actor=actor or default_actor(), reason=reason, expected_revision=expected_revision
        )

    def accept(self, ids: builtins.list[str], *, actor: str | None = None) -> int:
        return self.set_status(ids, "accepted", actor=actor)

    def reject(self, ids: builtins.list[str], reason: str, *, actor: str | None = None) -> int:
        return self.set_status(ids, "rejected", actor=actor, reason=reason)

    def comment(self, conversation_id: str, text: str, *, actor: str | None = None) -> None:
        if not text.strip():
            raise StoreError("a comment cannot be empty")
        self.store.add_event(conversation_id, "comment", {"text": text}, actor=actor or default_actor())

    def tag(
        self, ids: builtins.list[str], tags: builtins.list[str], *, actor: str | None = None, remove: bool = False
    ) -> int:
        return self.store.set_tags(ids, tags, actor=actor or default_actor(), add=not remove)

    def edit(
        self,
        conversation_id: str,
        messages: builtins.list[Message] | builtins.list[dict[str, Any]],
        *,
        base_revision: int,
        actor: str | None = None,
        note: str | None = None,
    ) -> int:
        """Save edited messages as a new revision; refused if someone saved since `base_revision`."""
        actor = actor or default_actor()
        current = self.store.get_conversation(conversation_id)
        msgs = tuple(m if isinstance(m, Message) else Message.from_dict(m) for m in messages)
        conv = Conversation(msgs, tuple(current["tools"]), current["metadata"])
        return self.store.add_revision(
            current["id"],
            conv,
            actor=actor,
            kind="edit",
            expected_revision=base_revision,
            note=note,
            provenance=Provenance(kind="edit", actor=actor),
        )

    def conversation(self, conversation_id: str, revision: int | None = None) -> Conversation:
        return self.store.conversation(conversation_id, revision)


__all__ = [
    "ConversationPage",
    "ConversationView",
    "CoreService",
    "FileReadError",
    "ImportIncomplete",
    "ImportPreview",
    "ImportReport",
    "ImportTotals",
    "ImportedFile",
    "QuarantinePage",
    "Stats",
    "UnreadableFile",
    "default_actor",
]


def _token_counts(measurement_json: str) -> dict[str, Any]:
    """tokens, trained_tokens and per-turn counts of one stored validation measurement."""
    import json

    m = json.loads(measurement_json)
    if m.get("tokens") is None:
        return {"tokens": None, "trained_tokens": 0, "turns": []}
    spans = [(int(a), int(b)) for a, b in m.get("spans") or []]
    turns: builtins.list[dict[str, int]] = []
    start = 0
    for n in m.get("turn_tokens") or []:
        end = start + int(n)
        trained = sum(max(0, min(end, b) - max(start, a)) for a, b in spans)
        turns.append({"tokens": int(n), "trained_tokens": trained})
        start = end
    return {"tokens": m["tokens"], "trained_tokens": m.get("loss_tokens", 0), "turns": turns}
