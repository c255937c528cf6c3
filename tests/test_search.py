"""The text filter answered from the token index returns exactly what the plain scan
(`contains(lower(search_text), lower(q))` over every current revision) returns: pages, keyset
paging, bounded counts and the Review queue, for tricky text, across new revisions and for a
store made before the index existed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

import workbench
from curation.records import Provenance
from tests.conftest import write
from workbench.store import imports, search
from workbench.store.core import text_search

TEXTS = [
    ("set max_retries to 3", "QuillDB replication lag is fine"),
    ("set maxXretries to 3", "quilldb REPLICATION restarted"),
    ("50% off today", "the replication, the backup"),
    ("500 off today", "(replication) backup"),
    ("open C:\\logs\\app.txt", "the backup failed"),
    ("open C:/logs/app.txt", "The Backup Failed"),
    ("数据库连接失败", "请检查数据库配置"),
    ("连接超时", "the replication lag"),
    ("ends with foo", "bar starts here"),
    ("foo bar on one line", "nothing"),
    ("tab\tseparated value", "x"),
    ("İstanbul office", "STRASSE and straße"),
    ("  padded   spaces  ", "the end"),
    ("the replication lag grew", "replication lag backup"),
]
QUERIES = [
    "max_retries", "MAX_RETRIES", "50%", "%", "c:\\logs", "quilldb", "QuillDB replication", "replication",
    "replication lag", "the replication", "lag", "连接", "数据库", "foo\nbar", "foo bar", " bar", "bar ",
    "the", "zzz-none", " ", "o", "b\ts", "istanbul", "straße", "ication, the back", "the end", "  ",
    "retry_budget", "backup failed", "the replication lag grew\nreplication lag backup",
    "a b c d e f g h i j k l m n o p the replication lag",
]  # fmt: skip


def reference(wb: workbench.Workbench, q: str, status: str | None) -> list[str]:
    """The plain scan, written out here independently of the store's code."""
    with wb.store.db.connect() as con:
        return [
            r[0]
            for r in con.execute(
                "SELECT c.id FROM conversations c JOIN revisions r ON r.conversation_id = c.id "
                "AND r.revision = c.revision WHERE contains(lower(r.search_text), lower(?)) "
                "AND (? IS NULL OR c.status = ?) ORDER BY c.created_at, c.id",
                [q, status, status],
            ).fetchall()
        ]


def listed(wb: workbench.Workbench, q: str, status: str | None, limit: int = 3, cap: int = 4) -> dict[str, Any]:
    """Every page of the Browse listing (keyset paging, bounded count)."""
    ids: list[str] = []
    after, first = None, None
    while True:
        r = wb.list(text=q, status=status, limit=limit, after=after, count_limit=cap)
        first = first or (r.total, r.total_capped)
        ids += [c["id"] for c in r.conversations]
        if r.next_after is None:
            return {"ids": ids, "total": first}
        after = r.next_after


def queued(wb: workbench.Workbench, q: str, status: str | None) -> list[str]:
    out: list[str] = []
    after = None
    while rows := wb.queue_ahead({"text": q, "status": status}, after=after, limit=2):
        out += [cid for cid, _ in rows]
        after = rows[-1][1]
    return out


def check_all(wb: workbench.Workbench, queries: list[str] = QUERIES) -> None:
    wb.store.db.keep_open_s = 5.0  # one open file for the many reads below
    for q, status in [(q, None) for q in queries] + [(q, "pending") for q in queries[::4]]:
        want = reference(wb, q, status)
        got = listed(wb, q, status)
        assert got["ids"] == want, (q, status)
        assert got["total"] == (min(len(want), 4), len(want) > 4), (q, status)
        assert wb.count(text=q, status=status, limit=4) == min(len(want), 5), (q, status)
        assert queued(wb, q, status) == want, (q, status)


@pytest.mark.parametrize("tiny", [False, True], ids=["all-rare", "frequent-tokens"])
def test_index_answers_exactly_like_the_scan(wb, tmp_path: Path, monkeypatch, tiny: bool) -> None:
    wb.store.db.keep_open_s = 5.0
    if tiny:  # most tokens frequent, verification two at a time, walks that give up early
        monkeypatch.setattr(search, "FREQUENT", 2)
        monkeypatch.setattr(search, "FREQUENT_SHARE", 0.0)
        monkeypatch.setattr(search, "GROUP", 2)
        monkeypatch.setattr(search, "WALK_LIMIT", 5)
        # A file lands in chunks of 3 rows, indexed 4+ rows at a time: tokens turn frequent mid-file.
        monkeypatch.setattr(imports, "IMPORT_CHUNK_ROWS", 3)
        monkeypatch.setattr(imports, "INDEX_BATCH_ROWS", 4)
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]} for u, a in TEXTS]
    wb.import_files([write(tmp_path / "t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))])
    # A second file lands later (another created_at), with a repeat of the first file's words.
    more = [{"instruction": f"replication lag report {i}", "output": f"max_retries={i}"} for i in range(5)]
    wb.import_files([write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in more))])
    ids = [c["id"] for c in wb.list(limit=100).conversations]
    wb.accept(ids[:4])
    assert reference(wb, "max_retries", None)
    if not tiny:  # the index answers these itself: no piece in any text, or only rare pieces
        with wb.store.db.connect() as con:
            assert text_search(con, {"text": "zzz-none"}).empty
            assert text_search(con, {"text": "MAX_RETRIES"}).usable
    check_all(wb)

    # A new revision: the old text no longer matches, the new one does (redactions, edits, labels).
    target = reference(wb, "max_retries", None)[0]
    first = wb.show(target)
    msgs = [{**m, "content": m["content"].replace("max_retries", "retry_budget")} for m in first.messages]
    wb.edit(target, msgs, base_revision=first.revision)
    assert target in reference(wb, "retry_budget", None)
    assert target not in reference(wb, "max_retries", None)
    check_all(wb, ["max_retries", "retry_budget", "retry", "to 3", "set max", "replication"])


def test_index_of_a_store_made_before_it(wb, tmp_path: Path, store_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]} for u, a in TEXTS]
    wb.import_files([write(tmp_path / "t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))])
    first = wb.show(wb.list(limit=1).conversations[0]["id"])
    msgs = [{**m, "content": m["content"] + " retry_budget"} for m in first.messages]
    wb.edit(first.id, msgs, base_revision=first.revision)
    wb.store.db.release()
    # An older store: no index tables, no record of their migration.
    con = duckdb.connect(str(store_path))
    con.execute("DROP TABLE search_postings; DROP TABLE search_tokens; DROP TABLE search_stale")
    con.execute("DROP SEQUENCE search_token_ids")
    con.execute("DELETE FROM schema_migrations WHERE component = 'search'")
    con.close()
    again = workbench.open(store_path)  # the migration builds the index from the current revisions
    with again.store.db.connect() as c:
        assert c.execute("SELECT count(*) FROM search_tokens").fetchall()[0][0] > 0
    check_all(again)


def test_two_edits_at_once_both_land_and_are_found(wb, tmp_path: Path) -> None:
    """Two reviewers' saves in overlapping transactions write no common index row."""
    rows = [{"instruction": f"ticket {i} about zebrafish", "output": "ok"} for i in range(2)]
    wb.import_files([write(tmp_path / "z.jsonl", "\n".join(json.dumps(r) for r in rows))])
    ids = [c["id"] for c in wb.list(limit=2).conversations]
    edited = []
    for cid in ids:
        conv = wb.store.conversation(cid)
        msgs = tuple(replace(m, content=f"{m.content} narwhal") for m in conv.messages)
        edited.append(replace(conv, messages=msgs))
    # Both edits share the rare tokens "ticket", "about", "zebrafish" and add "narwhal".
    with wb.store.db.transaction() as one, wb.store.db.transaction() as two:
        wb.store.add_revision(ids[0], edited[0], actor="ana", con=one)
        wb.store.add_revision(ids[1], edited[1], actor="bob", con=two)
    for q in ("narwhal", "zebrafish narwhal", "ZEBRAFISH"):
        assert listed(wb, q, None)["ids"] == reference(wb, q, None), q
        assert sorted(reference(wb, q, None)) == sorted(ids), q
    # A paraphrase (Augment) is a new conversation: found at once.
    para = replace(edited[0], messages=tuple(replace(m, content=m.content + " okapi") for m in edited[0].messages))
    prov = Provenance(
        kind="paraphrase", parent_id=ids[0], parent_revision=2, model="m", prompt_id="p", prompt_sha256="0"
    )
    new_id, created = wb.store.add_conversation(para, prov, actor="ana")
    assert created and listed(wb, "okapi", None)["ids"] == reference(wb, "okapi", None) == [new_id]


PHRASES = [
    "the replication", "the replication lag", "replication lag", "the backup", "e replication l", "the end",
    "lag backup", "replication, the", "foo bar", "the\\nbackup", "backup failed", "please check the logs",
    "check the", "please check",
]  # fmt: skip


def tiny_index(monkeypatch) -> None:
    """Most tokens frequent (pairs of them indexed), tokens turning frequent mid-file."""
    monkeypatch.setattr(search, "FREQUENT", 2)
    monkeypatch.setattr(search, "FREQUENT_SHARE", 0.0)
    monkeypatch.setattr(search, "GROUP", 2)
    monkeypatch.setattr(imports, "IMPORT_CHUNK_ROWS", 3)
    monkeypatch.setattr(imports, "INDEX_BATCH_ROWS", 4)


def test_phrases_of_frequent_words_from_pairs_stay_exact(wb, tmp_path: Path, monkeypatch) -> None:
    """Phrases whose words are all frequent are narrowed by the pairs' postings and the rare tokens'
    neighbour masks, and stay exact across new revisions (edits; redactions write the same way)."""
    tiny_index(monkeypatch)
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]} for u, a in TEXTS]
    # Indexed 6, 6, 6 and 5 rows at a time: "please" turns frequent in the third batch, "check"
    # (once there, rare) in the fourth: the pair's postings then come from the third batch too.
    extra = [("please check once", "ok")] + [(f"please wait {i}", "please note") for i in range(3)]
    extra += [(f"check the logs {i}", "ok") for i in range(3)] + [
        (f"please check the logs {i}", "ok") for i in range(2)
    ]
    rows += [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]} for u, a in extra]
    wb.import_files([write(tmp_path / "t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))])
    with wb.store.db.connect() as con:
        held = con.execute(
            "SELECT count(DISTINCT p.conversation_id) FROM search_postings p JOIN search_tokens v "
            "ON v.id = p.token_id WHERE v.token = 'please check'"
        ).fetchall()[0][0]
        assert held == len(reference(wb, "please check", None)) == 3
        assert text_search(con, {"text": "the replication"}).usable  # narrowed by the pair, not walked
    check_all(wb, PHRASES)

    # An edit removes the phrase from one conversation and adds it to another's text.
    have = reference(wb, "the replication", None)
    gone = wb.show(have[0])
    wb.edit(
        gone.id,
        [{**m, "content": m["content"].replace("the replication", "a replica")} for m in gone.messages],
        base_revision=gone.revision,
    )
    other = next(c for c in reference(wb, "please", None) if c not in have)
    shown = wb.show(other)
    wb.edit(
        other,
        [{**m, "content": m["content"] + " the replication"} for m in shown.messages],
        base_revision=shown.revision,
    )
    # A redaction's revision (the same write path: Store.add_revision), replacing a phrase.
    target = reference(wb, "please check", None)[0]
    conv = wb.store.conversation(target)
    red = tuple(replace(m, content=m.content.replace("please check", "<PERSON> check")) for m in conv.messages)
    wb.store.add_revision(target, replace(conv, messages=red), actor="pii", kind="redaction")
    assert gone.id not in reference(wb, "the replication", None)
    assert other in reference(wb, "the replication", None)
    assert target not in reference(wb, "please check", None)
    check_all(wb, [*PHRASES, "<person> check", "a replica"])


def test_index_of_a_store_with_the_first_index(wb, tmp_path: Path, store_path: Path) -> None:
    """A store indexed by the first version (single tokens, no pairs or masks) is re-indexed on open."""
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]} for u, a in TEXTS]
    wb.import_files([write(tmp_path / "t.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))])
    first = wb.show(wb.list(limit=1).conversations[0]["id"])
    wb.edit(
        first.id,
        [{**m, "content": "the backup " + m["content"]} for m in first.messages],
        base_revision=first.revision,
    )
    wb.store.db.release()
    con = duckdb.connect(str(store_path))  # the first index's tables, with postings of single tokens only
    con.execute("DROP TABLE search_postings")
    con.execute(
        "CREATE TABLE search_postings (token_id INTEGER NOT NULL, conversation_id TEXT NOT NULL, "
        "revision INTEGER NOT NULL, created_at TIMESTAMP NOT NULL)"
    )
    con.execute("DELETE FROM search_tokens WHERE strpos(token, ' ') > 0")
    con.execute("DELETE FROM schema_migrations WHERE component = 'search' AND number = 2")
    con.close()
    again = workbench.open(store_path)
    with again.store.db.connect() as c:
        # (the migration counts with the real thresholds: nothing is frequent in 14 rows, no pairs)
        assert c.execute("SELECT count(*) FROM search_postings WHERE prev <> 0 AND next <> 0").fetchall()[0][0] > 0
    check_all(again, PHRASES)


def test_pairs_guessed_frequent_from_a_sample_stay_exact(wb, tmp_path: Path, monkeypatch) -> None:
    """A large batch guesses its frequent pairs from one conversation in PAIR_SAMPLE (no postings
    gathered for them); the answers stay exact."""
    tiny_index(monkeypatch)
    monkeypatch.setattr(imports, "INDEX_BATCH_ROWS", 1000)  # one batch of 40 rows >= 8 * FREQUENT
    texts = [(f"please check the replication {i}", f"the backup and the end {i % 3}") for i in range(40)]
    rows = [{"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]} for u, a in texts]
    wb.import_files([write(tmp_path / "g.jsonl", "\n".join(json.dumps(r) for r in rows))])
    with wb.store.db.connect() as con:
        dense = con.execute("SELECT count(*) FROM search_tokens WHERE strpos(token, ' ') > 0 AND frequent").fetchall()
        assert dense[0][0] > 0
    check_all(wb, PHRASES)
