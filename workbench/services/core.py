"""Use cases over the store: what the CLI, the app and the Python API all call."""

from __future__ import annotations

import builtins
import getpass
import hashlib
import os
from pathlib import Path
from typing import Any

from curation.formats import ALPACA_JOIN, FileReadError, ParsedFile, parse_file
from curation.records import Conversation, Message, Provenance
from workbench.store import Store, StoreError


def default_actor() -> str:
    return os.environ.get("SIFT_ACTOR") or getpass.getuser() or "unknown"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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

    def __init__(self, path: Path, cause: BaseException, committed: builtins.list[dict[str, Any]]) -> None:
        done = "; ".join(f"{f['path']} ({f['imported']} imported, {f['quarantined']} quarantined)" for f in committed)
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
        alpaca_join: str = ALPACA_JOIN,
    ) -> dict[str, Any]:
        """Import files, each in its own transaction. `alpaca_join` goes between an Alpaca row's
        instruction and input (a blank line by default; LLaMA-Factory uses one newline).

        Every file is read and mapped before anything is written, so an unreadable file stops
        the whole command with nothing changed. When writing a later file fails (disk full, a
        busy store), the files committed before it stay and the error names each of them.
        """
        actor = actor or default_actor()
        parsed: list[tuple[ParsedFile, str]] = []
        for p in paths:
            path = Path(p)
            pf = parse_file(path, format, alpaca_join=alpaca_join)
            pf.path = storable_path(path)
            parsed.append((pf, file_sha256(path)))
        files: builtins.list[dict[str, Any]] = []
        for pf, sha in parsed:
            try:
                f = self.store.import_parsed(pf, sha256=sha, actor=actor, licence=licence)
            except Exception as e:
                if not files:
                    raise
                raise ImportIncomplete(pf.path, e, files) from e
            files.append({**f, "encoding": pf.encoding})
        totals = {k: sum(f[k] for f in files) for k in ("rows", "imported", "already_present", "quarantined")}
        return {"files": files, "totals": totals}

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def show(self, conversation_id: str, revision: int | None = None) -> dict[str, Any]:
        """One conversation; where validation measured its revisions (under the last run's tokenizer
        and template), the shown revision and each revision in `history` carry `tokens`,
        `trained_tokens` and per-turn counts (`turns`: tokens and trained tokens of each message)."""
        d = self.store.get_conversation(conversation_id, revision)
        run = self.store.latest_validate_run()
        identity = ((run or {}).get("config") or {}).get("identity")
        if not identity:
            return d
        results = self.store.validate_results_of(conversation_id, identity)
        if d["revision"] in results:
            d.update(_token_counts(results[d["revision"]]))
        for h in d["history"]:
            if h.get("kind") == "revision" and h.get("revision") in results:
                h.update(_token_counts(results[h["revision"]]))
        return d

    def list(self, **filters: Any) -> dict[str, Any]:
        return self.store.list_conversations(**filters)

    def quarantine(self, *, limit: int = 100, offset: int = 0, source: str | None = None) -> dict[str, Any]:
        return self.store.quarantine_rows(limit=limit, offset=offset, source=source)

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
        d = self.show(conversation_id, revision)
        return Conversation.from_dict(d)


__all__ = ["CoreService", "FileReadError", "ImportIncomplete", "default_actor"]


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
