"""Review through the Python API: queue order, guarded decisions, bulk actions with a confirmed
count, settings with history, progress, lineage, revision diffs, reviewer passwords."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.records import Conversation, Message, Provenance
from curation.revision_diff import diff_turns, summarize
from tests.conftest import write
from workbench.reviewers import (
    ReviewerConfigError,
    add_reviewer,
    authenticate,
    hash_password,
    load_reviewers,
    verify_password,
)
from workbench.store import ConflictError, NotFound, StoreError


def convs(n: int, word: str = "question") -> str:
    rows = [
        {"messages": [{"role": "user", "content": f"{word} {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows)


@pytest.fixture
def six(wb, tmp_path: Path):
    wb.store.db.keep_open_s = 5  # as the app does: one open for the whole test
    wb.import_files([write(tmp_path / "six.jsonl", convs(6))], actor="loader")
    return wb


def test_queue_walks_the_filter_in_keyset_order(six) -> None:
    wb = six
    order = [c["id"] for c in wb.list(limit=10).conversations]
    seen, cursor = [], None
    while (nxt := wb.queue_next({"status": "pending"}, after=cursor)) is not None:
        seen.append(nxt[0])
        cursor = nxt[1]
    assert seen == order
    # Accepting the second one takes it out of the pending queue; the walk goes on past it.
    wb.decide(order[1], "accepted", expected_revision=1, expected_status="pending", actor="ana")
    first = wb.queue_next({"status": "pending"})
    assert first is not None and first[0] == order[0]
    nxt = wb.queue_next({"status": "pending"}, after=first[1])
    assert nxt is not None and nxt[0] == order[2]
    assert wb.count(status="pending") == 5 and wb.count(status="accepted", text="question 1") == 1
    with pytest.raises(StoreError, match="unknown filter 'colour'"):
        wb.count(colour="red")


def test_decisions_are_refused_when_someone_else_changed_it(six) -> None:
    wb = six
    cid = wb.list(limit=1).conversations[0]["id"]
    wb.decide(cid, "accepted", expected_revision=1, expected_status="pending", actor="ana")
    with pytest.raises(ConflictError, match=r"was marked accepted by ana at .* \(you saw pending\); reload it"):
        wb.decide(cid, "rejected", expected_revision=1, expected_status="pending", reason="off", actor="bob")
    msgs = wb.show(cid).messages
    wb.edit(cid, [msgs[0], {**msgs[1], "content": "better answer"}], base_revision=1, actor="ana")
    with pytest.raises(ConflictError, match="you saw revision 1, it is now at revision 2"):
        wb.decide(cid, "pending", expected_revision=1, expected_status="accepted", actor="bob")
    with pytest.raises(StoreError, match="a rejection needs a reason"):
        wb.decide(cid, "rejected", expected_revision=2, expected_status="accepted", reason=" ", actor="bob")
    with pytest.raises(NotFound, match="no conversation 'nope'"):
        wb.decide("nope", "accepted", expected_revision=1, expected_status="pending", actor="bob")
    # The second edit on the same base revision is refused and nothing is overwritten.
    with pytest.raises(ConflictError, match="changed since you opened it"):
        wb.edit(cid, [msgs[0]], base_revision=1, actor="bob")
    d = wb.show(cid)
    assert d.current_revision == 2 and d.messages[1]["content"] == "better answer"
    statuses = [(h["actor"], h["status"]) for h in d.history if h["kind"] == "status"]
    assert statuses == [("ana", "accepted")]


def test_bulk_needs_the_confirmed_count(six) -> None:
    wb = six
    f = {"status": "pending", "text": "question"}
    n = wb.bulk_count(f, "status", status="accepted")
    assert n == 6
    other = wb.list(limit=1).conversations[0]["id"]
    wb.decide(other, "rejected", expected_revision=1, expected_status="pending", reason="dup", actor="bob")
    with pytest.raises(
        ConflictError, match="the filter now matches 5 conversations to change, not the 6 you confirmed"
    ):
        wb.bulk_apply(f, "status", status="accepted", expected=6, actor="ana")
    assert wb.count(status="accepted") == 0
    assert wb.bulk_apply(f, "status", status="accepted", expected=5, actor="ana") == 5
    assert wb.stats().by_status == {"pending": 0, "accepted": 5, "rejected": 1}
    # Tags: only rows that would change count, and every change is an event.
    assert wb.bulk_count({}, "tag_add", tags=["batch1"]) == 6
    assert wb.bulk_apply({}, "tag_add", tags=["batch1"], expected=6, actor="ana") == 6
    assert wb.bulk_count({}, "tag_add", tags=["batch1"]) == 0
    assert wb.bulk_apply({"status": "rejected"}, "tag_remove", tags=["batch1"], expected=1, actor="ana") == 1
    assert wb.count(tag="batch1") == 5
    with pytest.raises(StoreError, match="a rejection needs a reason"):
        wb.bulk_apply({}, "status", status="rejected", expected=5, actor="ana")
    h = wb.show(other).history
    assert [e["op"] for e in h if e["kind"] == "tag"] == ["add", "remove"] and all(
        e.get("bulk") for e in h if e["kind"] == "tag"
    )


def test_settings_keep_their_history(six) -> None:
    wb = six
    assert "How to review" in wb.review_guide() and wb.review_tags() == []
    wb.set_review_guide("# Ours\nBe kind.", actor="ana")
    wb.set_review_guide("# Ours v2", actor="bob")
    wb.set_review_tags(["billing", " refund ", "billing", ""], actor="ana")
    wb.set_reject_reasons(["wrong answer", "off topic"], actor="ana")
    assert wb.review_config().to_dict() == {
        "guide": "# Ours v2",
        "tags": ["billing", "refund"],
        "reject_reasons": ["wrong answer", "off topic"],
    }
    with pytest.raises(StoreError, match="at most 100000"):
        wb.set_review_guide("x" * 100_001, actor="ana")
    dump = wb.store.logical_dump()["events"]
    guides = [json.loads(e[3])["value"] for e in dump if e[2] == "setting" and "guide" in e[3]]
    assert sorted(guides) == ["# Ours\nBe kind.", "# Ours v2"]


def test_progress_counts_reviewers_flags_and_time(six) -> None:
    wb = six
    ids = [c["id"] for c in wb.list(limit=10).conversations]
    wb.decide(ids[0], "accepted", expected_revision=1, expected_status="pending", actor="ana")
    wb.decide(ids[1], "rejected", expected_revision=1, expected_status="pending", reason="bad", actor="bob")
    wb.comment(ids[1], "why?", actor="ana")
    wb.edit(ids[2], [{"role": "user", "content": "q"}], base_revision=1, actor="ana")
    wb.store.start_stage_run("r1", "validate", {}, actor="ana")
    wb.store.replace_flags(
        "validate",
        "r1",
        [{"conversation_id": ids[1], "revision": 1, "reason": "too_short", "severity": "warning", "message": "short"}],
    )
    p = wb.progress(bucket="hour")
    assert p.by_status == {"pending": 4, "accepted": 1, "rejected": 1}
    ana = next(r for r in p.reviewers if r["reviewer"] == "ana")
    assert (ana["accepted"], ana["edits"], ana["comments"], ana["conversations"]) == (1, 1, 1, 3)
    assert p.flags == [
        {
            "stage": "validate",
            "reason": "too_short",
            "severity": "warning",
            "conversations": 1,
            "pending": 0,
            "accepted": 0,
            "rejected": 1,
        }
    ]
    assert sum(r["n"] for r in p.throughput) == 4 and {r["reviewer"] for r in p.throughput} == {"ana", "bob"}
    with pytest.raises(StoreError, match="unknown bucket 'year'"):
        wb.progress(bucket="year")


def test_lineage_sources_revisions_paraphrases_versions(six, tmp_path: Path) -> None:
    wb = six
    wb.import_files([write(tmp_path / "again.jsonl", convs(1))], actor="loader")
    cid = wb.list(text="question 0").conversations[0]["id"]
    wb.edit(
        cid,
        [{"role": "user", "content": "question 0"}, {"role": "assistant", "content": "fixed"}],
        base_revision=1,
        actor="ana",
    )
    child = Conversation((Message("user", "a question, reworded"), Message("assistant", "fixed")))
    prov = Provenance(
        "paraphrase", parent_id=cid, parent_revision=2, model="smollm2", prompt_id="p1", prompt_sha256="0" * 64
    )
    child_id, _ = wb.store.add_conversation(child, prov, actor="augment", family_id=cid)
    lin = wb.lineage(cid[:8])
    assert lin.id == cid and lin.family_size == 2
    assert [(s["file"], s["line"]) for s in lin.sources] == [("six.jsonl", 1), ("again.jsonl", 1)]
    assert [(r["revision"], r["kind"], r["actor"]) for r in lin.revisions] == [
        (1, "import", "loader"),
        (2, "edit", "ana"),
    ]
    assert lin.children_total == 1 and lin.children[0]["id"] == child_id
    assert lin.children[0]["made_by"]["model"] == "smollm2"
    child_lin = wb.lineage(child_id)
    assert [p["id"] for p in child_lin.parents] == [cid] and child_lin.sources[0]["kind"] == "paraphrase"
    assert lin.versions == [] and lin.redactions == []
    changes = wb.revision_diff(cid, 2)
    assert [c.op for c in changes] == ["equal", "changed"] and "-answer 0\n+fixed" in changes[1].diff
    assert (changes[1].old_text, changes[1].new_text) == ("answer 0", "fixed")  # for the word diff
    assert "old_text" not in changes[0].to_dict()
    with pytest.raises(StoreError, match="revision 1 is the original"):
        wb.revision_diff(cid, 1)
    with pytest.raises(NotFound, match="has no revision 3"):
        wb.revision_diff(cid, 3)
    if hasattr(wb, "freeze"):
        wb.bulk_apply({}, "status", status="accepted", expected=wb.count(status="pending"), actor="ana")
        wb.freeze("v1", eval_fraction=0.0, actor="ana")
        assert [(v["version"], v["revision"]) for v in wb.lineage(cid).versions] == [("v1", 2)]


def test_diff_turns_aligns_deleted_and_inserted_turns() -> None:
    u = lambda t: {"role": "user", "content": t}  # noqa: E731
    a = lambda t: {"role": "assistant", "content": t}  # noqa: E731
    old = [u("hi"), a("hello\nhow can I help"), u("bye"), a("ciao")]
    new = [u("hi"), a("hello\nhow may I help"), a("ciao"), u("one more")]
    ch = diff_turns(old, new)
    assert [(c.op, c.old_index, c.new_index) for c in ch] == [
        ("equal", 0, 0),
        ("changed", 1, 1),
        ("deleted", 2, None),
        ("equal", 3, 2),
        ("inserted", None, 3),
    ]
    assert "-how can I help\n+how may I help" in ch[1].diff and ch[2].diff == "- bye"
    assert summarize(ch) == "turn 2 changed, turn 3 deleted, turn 4 inserted"
    tool = {"role": "assistant", "content": None, "tool_calls": [{"name": "f", "arguments": '{"x": 1}'}]}
    ch = diff_turns([tool], [{**tool, "tool_calls": [{"name": "f", "arguments": '{"x": 2}'}]}])
    assert '-[tool call] f({"x": 1})' in ch[0].diff


def test_reviewer_passwords_are_salted_and_checked(tmp_path: Path) -> None:
    h1, h2 = hash_password("s3cret"), hash_password("s3cret")
    assert h1 != h2 and h1.startswith("scrypt$16384$8$1$") and "s3cret" not in h1
    assert verify_password("s3cret", h1) and not verify_password("S3cret", h1)
    assert not verify_password("s3cret", "plain") and not verify_password("x", "scrypt$bad")
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    pb = "pbkdf2_sha256$1000$" + base64.b64encode(salt).decode() + "$"
    pb += base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"pw", salt, 1000)).decode()
    assert verify_password("pw", pb) and not verify_password("pw2", pb)
    path = tmp_path / "reviewers.toml"
    assert load_reviewers(path) == {}
    add_reviewer(path, "ana", "pw-ana", admin=True)
    add_reviewer(path, "bob smith", "pw-bob")
    assert "pw-ana" not in path.read_text() and oct(path.stat().st_mode)[-3:] == "600"
    r = authenticate(path, "ana", "pw-ana")
    assert r is not None and r.admin and authenticate(path, "bob smith", "pw-bob") is not None
    assert authenticate(path, "ana", "pw-bob") is None and authenticate(path, "eve", "pw-ana") is None
    with pytest.raises(ReviewerConfigError, match="invalid reviewer name 'a/b'"):
        add_reviewer(path, "a/b", "x")
    with pytest.raises(ReviewerConfigError, match="a password cannot be empty"):
        add_reviewer(path, "carl", "")
    write(path, '[reviewers.eve]\npassword = "hunter2"\n')
    with pytest.raises(ReviewerConfigError, match="must be a scrypt or pbkdf2_sha256 hash, never plain text"):
        load_reviewers(path)
    write(path, "[reviewers\n")
    with pytest.raises(ReviewerConfigError, match="cannot read the reviewer list"):
        load_reviewers(path)
