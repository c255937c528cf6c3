"""AppTest for the app shell: the Import and Browse pages over a real temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, write
from workbench.app_pages.common import md_escape

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


def test_import_page_imports_and_shows_quarantine(app_store: Path, tmp_path: Path, monkeypatch) -> None:
    good = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'
    f = write(tmp_path / "in.jsonl", good + "\n{broken\n")
    at = AppTest.from_file(str(PAGES / "import_page.py"), default_timeout=60).run()
    assert [t.label for t in at.tabs] == ["Upload"]  # server paths are off by default
    monkeypatch.setenv("SIFT_IMPORT_ROOTS", str(tmp_path))
    at.run()
    assert [t.label for t in at.tabs] == ["Upload"]  # and never shown before anyone identifies
    at.session_state["reviewer"] = "ana"
    at.run()
    assert [t.label for t in at.tabs] == ["Upload", "Path on the server"]
    at.text_input[1].input(str(f))
    at.button[0].click().run()
    assert not at.exception
    assert any("1 imported" in s.value and "1 quarantined" in s.value for s in at.success)
    assert at.dataframe[0].value.shape[0] == 1  # the report
    q = at.dataframe[1].value
    assert list(q["line"]) == [2] and "invalid JSON" in q["message"][0]


def test_import_page_server_paths_stay_inside_the_allowed_folders(app_store: Path, tmp_path: Path, monkeypatch) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = write(tmp_path / "secret.jsonl", '{"messages": [{"role": "user", "content": "s"}]}')
    (allowed / "link.jsonl").symlink_to(outside)  # a symlink out of the folder is outside too
    monkeypatch.setenv("SIFT_IMPORT_ROOTS", str(allowed))
    at = AppTest.from_file(str(PAGES / "import_page.py"), default_timeout=60)
    at.session_state["reviewer"] = "ana"
    at.run()
    for typed in ("/nonexistent/file.jsonl", str(outside), str(allowed / "link.jsonl"), f"{allowed}/../secret.jsonl"):
        at.text_input[1].input(typed)
        at.button[0].click().run()
        assert [e.value for e in at.error] == [
            md_escape(f"Refused: {typed!r} is not a file inside an allowed import folder; nothing imported")
        ]
    assert workbench.open(app_store).stats().sources == 0


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
