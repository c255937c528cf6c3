"""AppTest for the Progress and Lineage pages over a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from curation.records import Conversation, Message, Provenance
from tests.conftest import ROOT, shown, write

PAGES = ROOT / "workbench" / "app_pages"


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    path = tmp_path / "p.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    wb = workbench.open(path)
    wb.store.db.keep_open_s = 5
    rows = [{"instruction": f"task {i}", "output": f"done {i}"} for i in range(4)]
    wb.import_files([write(tmp_path / "four.json", json.dumps(rows))], actor="loader")
    return wb


def test_progress_page(store) -> None:
    wb = store
    at = AppTest.from_file(str(PAGES / "progress.py"), default_timeout=60).run()
    assert not at.exception
    assert [m.value for m in at.metric] == ["4", "4", "0", "0"]
    assert any("Nobody has reviewed anything yet" in c.value for c in at.caption)
    ids = [c["id"] for c in wb.list().conversations]
    wb.decide(ids[0], "accepted", expected_revision=1, expected_status="pending", actor="ana")
    wb.decide(ids[1], "rejected", expected_revision=1, expected_status="pending", reason="x", actor="bob")
    wb.store.start_stage_run("r", "validate", {}, actor="ana")
    wb.store.replace_flags(
        "validate",
        "r",
        [{"conversation_id": ids[1], "revision": 1, "reason": "too_short", "severity": "error", "message": "m"}],
    )
    at.run()
    assert [m.value for m in at.metric] == ["4", "2", "1", "1"]
    reviewers = at.dataframe[0].value
    assert list(reviewers["reviewer"]) == ["ana", "bob"] and list(reviewers["accepted"]) == [1, 0]
    flags = at.dataframe[1].value
    assert (flags["reason"][0], flags["rejected"][0]) == ("too_short", 1)
    assert len(at.get("vega_lite_chart")) == 1
    at.segmented_control(key="pg_bucket").set_value("hour").run()
    assert not at.exception and any(s.value == "Throughput per hour" for s in at.subheader)


def test_lineage_page(store) -> None:
    wb = store
    cid = wb.list(text="task 0").conversations[0]["id"]
    wb.edit(
        cid,
        [{"role": "user", "content": "task 0"}, {"role": "assistant", "content": "done 0, checked"}],
        base_revision=1,
        actor="ana",
    )
    child = Conversation((Message("user", "task zero"), Message("assistant", "done 0, checked")))
    prov = Provenance(
        "paraphrase", parent_id=cid, parent_revision=2, model="smollm2", prompt_id="p", prompt_sha256="0" * 64
    )
    child_id, _ = wb.store.add_conversation(child, prov, actor="augment", family_id=cid)

    at = AppTest.from_file(str(PAGES / "lineage.py"), default_timeout=60)
    at.query_params["id"] = cid[:6]
    at.run()
    assert not at.exception
    assert at.subheader[0].value == f"Conversation {cid}"
    sources = at.dataframe[0].value
    assert (sources["file"][0], sources["line"][0], sources["format"][0]) == ("four.json", 1, "alpaca")
    revisions = at.dataframe[1].value
    assert list(revisions["kind"]) == ["import", "edit"] and list(revisions["by"]) == ["loader", "ana"]
    assert any("-done 0\n+done 0, checked" in c.value for c in at.code)
    children = at.dataframe[2].value
    assert list(children["id"]) == [child_id]
    assert any("Never redacted" in c.value for c in at.caption)
    at.selectbox[0].set_value(1).run()
    assert any(t.value == "done 0" for t in at.text)
    at.text_input[0].input(child_id).run()
    assert any("Made from:" in c.value for c in at.caption)
    parents = [df.value for df in at.dataframe if "made_by" in df.value.columns]
    assert list(parents[0]["id"]) == [cid]
    at.text_input[0].input("nope").run()
    assert [shown(e.value) for e in at.error] == ["no conversation 'nope'"]
