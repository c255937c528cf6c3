"""Review use cases: the queue, guarded decisions, bulk actions, guide and tag lists, progress,
lineage and revision diffs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curation.revision_diff import TurnChange, diff_turns
from workbench.services.core import default_actor
from workbench.services.results import Result
from workbench.store import Store, StoreError
from workbench.store.review import Cursor

FILTER_KEYS = ("status", "source", "flag", "text", "tag", "reviewer")
GUIDE_KEY = "review.guide"
TAGS_KEY = "review.tags"
REASONS_KEY = "review.reject_reasons"
MAX_GUIDE_CHARS = 100_000

DEFAULT_GUIDE = """\
### How to review

1. Read the whole conversation. Flags from the checks (validation, duplicates, personal data) are
   shown where they apply; highlighted text is what a check found.
2. **Accept** a conversation that is correct, helpful and safe to train on as it is.
3. **Edit** it when a small fix makes it right: change the text of any turn or delete a turn, then
   save. Your edit becomes a new revision; the original stays in the history.
4. **Reject** it, with a short reason, when it is wrong and not worth fixing.
5. **Skip** when you are unsure; **comment** to ask a colleague.

*An administrator can replace this guide for this store under "Guide and lists" below.*
"""


@dataclass(frozen=True)
class ReviewConfig(Result):
    """The review guide (markdown shown escaped) and the team's tags and common reject reasons."""

    guide: str
    tags: list[str]
    reject_reasons: list[str]


@dataclass(frozen=True)
class ReviewProgress(Result):
    """Review progress: `by_status` {status: n}; `reviewers` `{"actor", ...counts}` rows; `flags`
    rows per stage and reason; `throughput` rows per `bucket` (day or week)."""

    by_status: dict[str, int]
    reviewers: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    throughput: list[dict[str, Any]]
    bucket: str


@dataclass(frozen=True)
class Lineage(Result):
    """Where a conversation came from and what became of it: source rows, revisions (and the
    redactions among them), parents and children in its family, and the versions pinning it
    (None when the store has no versions yet)."""

    id: str
    status: str
    revision: int
    family_id: str | None
    family_size: int
    sources: list[dict[str, Any]]
    revisions: list[dict[str, Any]]
    redactions: list[dict[str, Any]]
    parents: list[dict[str, Any]]
    children: list[dict[str, Any]]
    children_total: int
    versions: list[dict[str, Any]] | None


def clean_filters(filters: dict[str, Any]) -> dict[str, Any]:
    """Only the known filter keys, with empty values dropped."""
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise StoreError(f"unknown filter {sorted(unknown)[0]!r} (use {', '.join(FILTER_KEYS)})")
    return {k: v for k, v in filters.items() if v not in (None, "", [])}


def describe_filters(filters: dict[str, Any]) -> str:
    f = clean_filters(filters)
    return ", ".join(f"{k} = {v!r}" for k, v in f.items()) or "no filter (every conversation)"


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.replace(",", "\n").splitlines() if x.strip()]


class ReviewService:
    store: Store

    # ------------------------------------------------------------ guide and lists

    def review_guide(self) -> str:
        return self.store.get_setting(GUIDE_KEY) or DEFAULT_GUIDE

    def set_review_guide(self, markdown: str, *, actor: str | None = None) -> None:
        if len(markdown) > MAX_GUIDE_CHARS:
            raise StoreError(f"the guide is {len(markdown)} characters; at most {MAX_GUIDE_CHARS}")
        self.store.set_setting(GUIDE_KEY, markdown, actor=actor or default_actor())

    def review_tags(self) -> list[str]:
        return _lines(self.store.get_setting(TAGS_KEY) or "")

    def set_review_tags(self, tags: list[str], *, actor: str | None = None) -> None:
        self.store.set_setting(
            TAGS_KEY, "\n".join(dict.fromkeys(t.strip() for t in tags if t.strip())), actor=actor or default_actor()
        )

    def reject_reasons(self) -> list[str]:
        return [x.strip() for x in (self.store.get_setting(REASONS_KEY) or "").splitlines() if x.strip()]

    def set_reject_reasons(self, reasons: list[str], *, actor: str | None = None) -> None:
        text = "\n".join(dict.fromkeys(r.strip() for r in reasons if r.strip()))
        self.store.set_setting(REASONS_KEY, text, actor=actor or default_actor())

    def review_config(self) -> ReviewConfig:
        """The guide and both lists, in one read."""
        s = self.store.get_settings("review.")
        return ReviewConfig(
            guide=s.get(GUIDE_KEY) or DEFAULT_GUIDE,
            tags=_lines(s.get(TAGS_KEY) or ""),
            reject_reasons=[x.strip() for x in (s.get(REASONS_KEY) or "").splitlines() if x.strip()],
        )

    # ------------------------------------------------------------ queue and decisions

    def count(self, *, limit: int | None = None, **filters: Any) -> int:
        """Conversations matching `filters`; with `limit`, at most `limit + 1` (meaning "more")."""
        return self.store.count_matching(clean_filters(filters), limit=limit)

    def queue_next(self, filters: dict[str, Any], *, after: Cursor | None = None) -> tuple[str, Cursor] | None:
        """The next conversation to review under `filters`, after the cursor of the last one:
        (id, cursor), or None at the end of the queue."""
        rows = self.store.queue_next(clean_filters(filters), after=after)
        return rows[0] if rows else None

    def queue_ahead(
        self, filters: dict[str, Any], *, after: Cursor | None = None, limit: int = 25
    ) -> list[tuple[str, Cursor]]:
        """The next `limit` conversations under `filters` (what the Review page buffers)."""
        return self.store.queue_next(clean_filters(filters), after=after, limit=limit)

    def cursor_of(self, conversation_id: str) -> Cursor:
        return self.store.cursor_of(conversation_id)

    def conversation_state(self, conversation_id: str) -> tuple[str, str, int]:
        """(id, status, current revision) of a conversation, by id or unique id prefix."""
        return self.store.conversation_state(conversation_id.strip())

    def decide(
        self,
        conversation_id: str,
        status: str,
        *,
        expected_revision: int,
        expected_status: str,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Accept, reject or reset one conversation as the reviewer saw it; refused if it changed."""
        if status == "rejected" and not (reason or "").strip():
            raise StoreError("a rejection needs a reason")
        self.store.decide(
            conversation_id,
            status,
            actor=actor or default_actor(),
            reason=(reason or "").strip() or None,
            expected_revision=expected_revision,
            expected_status=expected_status,
        )

    # ------------------------------------------------------------ bulk

    def bulk_count(
        self, filters: dict[str, Any], action: str, *, status: str | None = None, tags: list[str] | None = None
    ) -> int:
        return self.store.bulk_count(clean_filters(filters), action, status=status, tags=tags)

    def bulk_apply(
        self,
        filters: dict[str, Any],
        action: str,
        *,
        expected: int,
        status: str | None = None,
        reason: str | None = None,
        tags: list[str] | None = None,
        actor: str | None = None,
    ) -> int:
        """Change every conversation a filter matches, after the reviewer confirmed `expected` of them."""
        if action == "status" and status == "rejected" and not (reason or "").strip():
            raise StoreError("a rejection needs a reason")
        tags = [t.strip() for t in tags or [] if t.strip()]
        return self.store.bulk_apply(
            clean_filters(filters),
            action,
            expected=expected,
            actor=actor or default_actor(),
            status=status,
            reason=(reason or "").strip() or None,
            tags=tags,
        )

    # ------------------------------------------------------------ progress, lineage, diffs

    def progress(self, *, bucket: str = "day") -> ReviewProgress:
        return ReviewProgress(**self.store.progress(bucket=bucket))

    def lineage(self, conversation_id: str) -> Lineage:
        return Lineage(**self.store.lineage(conversation_id.strip()))

    def revision_diff(self, conversation_id: str, revision: int) -> list[TurnChange]:
        """Turn-by-turn changes from revision - 1 to `revision` (`TurnChange.to_dict()` as JSON)."""
        if revision < 2:
            raise StoreError("revision 1 is the original: there is nothing before it to compare with")
        old = self.store.revision_messages(conversation_id, revision - 1)
        new = self.store.revision_messages(conversation_id, revision)
        return diff_turns(old, new)
