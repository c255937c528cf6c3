"""AppTest for the app shell: the Import and Browse pages over a real temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, write

PAGES = ROOT / "workbench" / "app_pages"


@pytest.fixture
def app_store(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "app.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    return path


def test_router_renders(app_store: Path) -> None:
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.sidebar.text_input(key="reviewer") is not None


def test_import_page_imports_and_shows_quarantine(app_store: Path, tmp_path: Path) -> None:
    good = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'
    f = write(tmp_path / "in.jsonl", good + "\n{broken\n")
    at = AppTest.from_file(str(PAGES / "import_page.py"), default_timeout=60).run()
    at.text_input[1].input(str(f))
    at.button[0].click().run()  # no reviewer yet: refused
    assert any("reviewer name" in w.value for w in at.warning)
    assert workbench.open(app_store).stats()["conversations"] == 0
    at.session_state["reviewer"] = "ana"
    at.text_input[1].input(str(f))
    at.button[0].click().run()
    assert not at.exception
    assert any("1 imported" in s.value and "1 quarantined" in s.value for s in at.success)
    assert at.dataframe[0].value.shape[0] == 1  # the report
    q = at.dataframe[1].value
    assert list(q["line"]) == [2] and "invalid JSON" in q["message"][0]


def test_import_page_bad_path_is_an_error(app_store: Path) -> None:
    at = AppTest.from_file(str(PAGES / "import_page.py"), default_timeout=60).run()
    at.session_state["reviewer"] = "ana"
    at.text_input[1].input("/nonexistent/file.jsonl")
    at.button[0].click().run()
    assert any("no such file" in e.value for e in at.error)


def test_browse_filters_and_shows_text_not_html(app_store: Path, tmp_path: Path) -> None:
    rows = [{"instruction": f"question {i}", "output": "<script>alert(1)</script><b>bold</b>"} for i in range(30)]
    wb = workbench.open(app_store)
    wb.import_files([write(tmp_path / "a.json", json.dumps(rows))])
    at = AppTest.from_file(str(PAGES / "browse.py"), default_timeout=60).run()
    assert not at.exception
    assert "30 conversations" in at.caption[0].value and at.dataframe[0].value.shape[0] == 25
    at.text_input[0].input("question 7").run()
    assert "1 conversations" in at.caption[0].value
    cid = at.dataframe[0].value["id"][0]
    at.text_input[2].input(cid).run()
    assert any(t.value == "<script>alert(1)</script><b>bold</b>" for t in at.text)
    assert not [m for m in at.markdown if "<script>" in m.value]
