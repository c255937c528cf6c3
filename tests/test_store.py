"""The store through the Python API: import accounting, history, conflicts, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import workbench
from curation.formats import FileReadError
from curation.records import Message
from tests.conftest import write
from workbench.store import ConflictError, NotFound, StoreError


def test_alpaca_en_demo_counts_and_reimport(wb, corpora: Path, tmp_path: Path) -> None:
    f = corpora / "LLaMA-Factory" / "alpaca_en_demo.json"
    r = wb.import_files([f]).files[0]
    assert (r.rows, r.imported, r.already_present, r.quarantined) == (999, 985, 14, 0)
    # The same rows from another file: nothing new, but the new source rows are recorded.
    copy = write(tmp_path / "copy.jsonl", "\n".join(json.dumps(x) for x in json.loads(f.read_text())[:10]))
    r2 = wb.import_files([copy]).files[0]
    assert (r2.imported, r2.already_present) == (0, 10)
    first = wb.list(limit=1, source="copy.jsonl").conversations[0]
    sources = {p["source"] for p in wb.show(first["id"]).provenance}
    assert {"alpaca_en_demo.json", "copy.jsonl"} <= sources
    assert wb.stats().conversations == 985


def test_every_corpus_row_accounted_for(wb, corpora: Path) -> None:
    files = [
        p
        for d in ("LLaMA-Factory", "FastChat", "openai-cheat-sheet", "axolotl", "stanford_alpaca", "FineTuning")
        for p in sorted((corpora / d).iterdir())
        if p.suffix in (".json", ".jsonl")
    ]
    not_chat = {"dataset_info.json", "conversation.tokenized.json", "conversation.tokenized_llama2chat.json"}
    for f in files:
        if f.name in not_chat:
            with pytest.raises(FileReadError, match="cannot tell the format"):
                wb.import_files([f])
            continue
        t = wb.import_files([f]).totals
        assert t.imported + t.already_present + t.quarantined == t.rows > 0, f
    s = wb.stats()
    assert s.sources == len(files) - len(not_chat)
    assert s.conversations == s.revisions


def test_quarantine_keeps_the_rest(wb, tmp_path: Path) -> None:
    good = '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a"}]}'
    lines = [good % 1, '{"messages": [{"role": "user"', good % 2, '{"messages": [{"role": "bot", "content": "x"}]}']
    f = write(tmp_path / "mixed.jsonl", "\n".join(lines))
    t = wb.import_files([f]).totals
    assert (t.rows, t.imported, t.quarantined) == (4, 2, 2)
    q = wb.quarantine().rows
    assert [(r["line"], r["field"], r["message"]) for r in q] == [
        (2, "(line)", "invalid JSON: Expecting ',' delimiter at column 30"),
        (4, "messages[0].role", "unknown role 'bot'"),
    ]
    assert q[0]["raw"] == lines[1] and q[0]["file"].endswith("mixed.jsonl")


def test_unreadable_file_among_several_changes_nothing(wb, tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.json", json.dumps([{"instruction": "a", "output": "b"}]))
    bad = write(tmp_path / "bad.json", "[{")
    before = wb.store.logical_dump()
    with pytest.raises(FileReadError):
        wb.import_files([ok, bad])
    assert wb.store.logical_dump() == before


def test_streamed_import_in_chunks_matches_the_mapped_path(wb, tmp_path: Path, monkeypatch) -> None:
    """Rows that need no mapping take a fast path; ids, content and provenance must be what the
    mappers give, across chunk boundaries, repeats and quarantined lines."""
    from curation.formats import parse_file
    from workbench.store import imports

    plain = {"messages": [{"role": "user", "content": "héllo\u2028 \x01 日本"}, {"role": "assistant", "content": "hi"}]}
    rows = [
        json.dumps(plain, ensure_ascii=False),
        json.dumps({"messages": [{"content": "x", "role": "tool"}], "topic": {"b": 1, "a": [1.5e-07]}}),
        json.dumps({"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": None}]}),
        '{"messages": [',
        json.dumps({"messages": [{"role": "user", "content": "q"}], "tools": [{"name": "f", "parameters": {}}]}),
        json.dumps(plain),  # the first row again, in another chunk
        json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
    ]
    f = write(tmp_path / "mixed.jsonl", "\n".join(rows) + "\n")
    monkeypatch.setattr(imports, "IMPORT_CHUNK_ROWS", 2)
    monkeypatch.setattr(imports, "IMPORT_PREREAD_BYTES", 0)
    t = wb.import_files([f]).totals
    assert (t.rows, t.imported, t.already_present, t.quarantined) == (7, 4, 1, 2)
    for m in parse_file(f).mapped:
        conv = m.conversation
        got = wb.show(conv.id)
        assert got.messages == conv.content_dict()["messages"]
        assert got.metadata == conv.metadata
        lines = sorted(p["line"] for p in got.provenance)
        assert m.line in lines and all(p["format"] == "openai" for p in got.provenance)
        notes = next(p.get("mapping", []) for p in got.provenance if p["line"] == m.line)
        assert notes == list(m.mapping)
    with wb.store.db.connect() as con:
        stored = dict(con.execute("SELECT conversation_id, content FROM revisions").fetchall())
    assert stored == {m.conversation.id: m.conversation.content_json() for m in parse_file(f).mapped}
    assert sorted(p["line"] for p in wb.show(parse_file(f).mapped[0].conversation.id).provenance) == [1, 6]
    q = wb.quarantine().rows
    assert [(r["line"], r["field"]) for r in q] == [(4, "(line)"), (7, "messages[0].role")]


def test_keyset_pages_and_bounded_counts(wb, tmp_path: Path) -> None:
    rows = [{"instruction": f"question {i:02d}", "output": "yes" if i % 3 else "needle"} for i in range(30)]
    wb.import_files([write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows))])
    everything = [c["id"] for c in wb.list(limit=100).conversations]
    seen, after = [], None
    while True:
        page = wb.list(limit=7, after=after, count_limit=10)
        assert (page.total, page.total_capped) == (10, True)  # "10+": counting stopped at 10
        seen += [c["id"] for c in page.conversations]
        after = page.next_after
        if after is None:
            break
    assert seen == everything  # keyset pages cover every row once, in the offset order
    hits = wb.list(text="NEEDLE", limit=100, count_limit=50)
    assert (hits.total, hits.total_capped, len(hits.conversations)) == (10, False, 10)
    assert wb.count(text="needle", limit=4) == 5 and wb.count(text="needle") == 10


def test_text_filter_is_a_literal_substring(wb, tmp_path: Path) -> None:
    """`_`, `%` and `\\` in a search are the characters themselves, not LIKE wildcards."""
    texts = ["set max_retries to 3", "set maxXretries to 3", "50% off today", "500 off today",
             "open C:\\logs\\app.txt", "open C:/logs/app.txt"]  # fmt: skip
    rows = [{"instruction": t, "output": "ok"} for t in texts]
    wb.import_files([write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows))])

    def found(q: str) -> list[str]:
        return [wb.show(c["id"]).messages[0]["content"] for c in wb.list(text=q, limit=10).conversations]

    assert found("MAX_RETRIES") == ["set max_retries to 3"]
    assert found("50%") == ["50% off today"]
    assert found("c:\\logs") == ["open C:\\logs\\app.txt"]


def test_import_is_all_or_nothing(wb, tmp_path: Path, monkeypatch) -> None:
    f = write(tmp_path / "a.json", json.dumps([{"instruction": f"i{i}", "output": "o"} for i in range(50)]))
    wb.import_files([write(tmp_path / "seed.json", json.dumps([{"instruction": "s", "output": "o"}]))])
    before = wb.store.logical_dump()
    from workbench.store import imports

    real = imports._metadata_json

    calls = []

    def explode(*a, **k):  # a failure in the 4th chunk, after three chunks were written
        calls.append(1)
        if len(calls) == 40:
            raise RuntimeError("disk gone")
        return real(*a, **k)

    monkeypatch.setattr(imports, "IMPORT_CHUNK_ROWS", 10)
    monkeypatch.setattr(imports, "IMPORT_PREREAD_BYTES", 0)  # stream inside the transaction
    monkeypatch.setattr(imports, "_metadata_json", explode)
    with pytest.raises(RuntimeError):
        wb.import_files([f])
    assert wb.store.logical_dump() == before


def test_review_history_and_conflict(wb, tmp_path: Path) -> None:
    wb.import_files([write(tmp_path / "a.json", json.dumps([{"instruction": "2+2?", "output": "5"}]))])
    cid = wb.list().conversations[0]["id"]
    wb.comment(cid, "answer is wrong", actor="ana")
    rev = wb.edit(cid, [Message("user", "2+2?"), Message("assistant", "4")], base_revision=1, actor="ana")
    assert rev == 2
    with pytest.raises(ConflictError, match="you saw revision 1, it is now at revision 2"):
        wb.edit(cid, [Message("user", "2+2?"), Message("assistant", "four")], base_revision=1, actor="ben")
    wb.set_status([cid], "accepted", actor="ana")
    d = wb.show(cid)
    assert d.messages[1]["content"] == "4" and d.status == "accepted" and d.revision == 2
    assert wb.show(cid, revision=1).messages[1]["content"] == "5"
    kinds = [(h["kind"], h["actor"]) for h in d.history]
    assert kinds == [
        ("revision", "root" if kinds[0][1] == "root" else kinds[0][1]),
        ("comment", "ana"),
        ("revision", "ana"),
        ("status", "ana"),
    ]
    assert wb.list(text="four").total == 0 and wb.list(text="2+2").total == 1
    assert wb.list(reviewer="ana").total == 1 and wb.list(status="pending").total == 0
    with pytest.raises(NotFound):
        wb.show("nope")
    with pytest.raises(StoreError, match="unknown status 'maybe'"):
        wb.set_status([cid], "maybe")


def test_open_default_path_from_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIFT_STORE", str(tmp_path / "env.duckdb"))
    wb = workbench.open()
    assert wb.stats().conversations == 0 and (tmp_path / "env.duckdb").exists()


def test_concurrent_processes_wait_for_the_lock(store_path: Path, tmp_path: Path) -> None:
    """A second process holding the file does not surface a DuckDB lock error."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(store_path)!r}); print('up', flush=True); time.sleep(2); c.close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
    wb = workbench.open(store_path)
    f = write(tmp_path / "a.json", json.dumps([{"instruction": "x", "output": "y"}]))
    assert wb.import_files([f]).totals.imported == 1
    holder.wait(10)


def test_records_maps_rows_by_column_name_and_refuses_an_unknown_converter() -> None:
    import duckdb

    from workbench.store._db import loads, records

    con = duckdb.connect()
    rows = records(con.execute("SELECT 1 AS a, '{\"k\": 2}' AS js, NULL AS none_js"), js=loads, none_js=loads)
    assert rows == [{"a": 1, "js": {"k": 2}, "none_js": None}]
    with pytest.raises(KeyError, match="no such column"):
        records(con.execute("SELECT 1 AS a"), b=loads)


def test_record_stage_lands_run_flags_and_stats_together_or_not_at_all(wb, tmp_path: Path) -> None:
    """The one helper every stage records through (`curation.stage`): a new run, its flags
    replacing the stage's earlier ones, its stats; a fault part-way leaves the store as it was."""
    from curation.stage import StageFlag, StageResult
    from workbench.store.stage_runs import new_stage_run_id

    rows = [{"instruction": f"q{i}", "input": "", "output": "a"} for i in range(2)]
    wb.import_files([write(tmp_path / "two.jsonl", "\n".join(json.dumps(r) for r in rows))])
    ids = [c["id"] for c in wb.list().conversations]
    first = StageResult("toy", {"k": 1}, [StageFlag(ids[0], 1, "odd", "warning", "odd one")], {"n": 1})
    wb.store.record_stage(new_stage_run_id("toy"), first, actor="ana")
    assert [(x["reason"], x["severity"], x["message"]) for x in wb.show(ids[0]).flags] == [
        ("odd", "warning", "odd one")
    ]
    (run,) = wb.store.stage_runs("toy")
    assert (run["config"], run["stats"], run["actor"]) == ({"k": 1}, {"n": 1}, "ana") and run["finished_at"]

    # a flag the table refuses (no severity) fails after the run's row was written: nothing of it stays
    bad = StageResult("toy", {"k": 2}, [StageFlag(ids[1], 1, "odd", None, "x")], {"n": 2})  # type: ignore[arg-type]
    with pytest.raises(duckdb.ConstraintException):
        wb.store.record_stage(new_stage_run_id("toy"), bad, actor="ana")
    assert len(wb.store.stage_runs("toy")) == 1 and not wb.show(ids[1]).flags
    assert [x["reason"] for x in wb.show(ids[0]).flags] == ["odd"]
