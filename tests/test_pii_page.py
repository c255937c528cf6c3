"""AppTest for the PII page over a real store and the real analyzer (shared with the services in
this process): progress and counts, the findings queue with the span highlighted as escaped text,
accept / dismiss, bulk accept by entity and score, add a missed span, and a redaction run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, write

PAGE = str(ROOT / "workbench" / "app_pages" / "pii.py")


@pytest.fixture(scope="module")
def analyzer():
    from workbench.services.pii import analyzer as shared

    return shared()


@pytest.fixture
def store(tmp_path: Path, monkeypatch, analyzer):
    path = tmp_path / "pii.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "no-reviewers.toml"))
    wb = workbench.open(path)
    rows = [
        {
            "messages": [
                {"role": "user", "content": "<b>Hi</b> I am Maria Gonzalez, mail maria.g@example.org [x](http://evil)"},
                {"role": "assistant", "content": "Thanks Maria Gonzalez."},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Call Tomasz Kowalczyk on +1-415-555-0199."},
                {"role": "assistant", "content": "ok"},
            ]
        },
    ]
    wb.import_files([write(tmp_path / "c.jsonl", "\n".join(json.dumps(r) for r in rows))], actor="loader")
    wb.pii_scan_report(actor="loader")
    return wb


def page(reviewer: str | None = "ana") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    if reviewer:
        at.session_state["reviewer"] = reviewer
    return at.run()


def test_pii_page_queue_review_bulk_add_and_redact(store) -> None:
    wb = store
    at = page()
    assert not at.exception
    assert [m.value for m in at.metric] == ["2", "2", "2", "0"]
    texts = [m.value for m in at.markdown]
    # the span is highlighted, everything else escaped: no HTML tag or link can form
    shown = next(t for t in texts if "maria" in t.lower() and "background" in t)
    assert "\\<b\\>Hi\\<\\/b\\>" in shown and "\\[x\\]\\(http\\:\\/\\/evil\\)" in shown
    assert ":orange-background[" in shown and ":orange-badge[" in shown

    pending = wb.pii_findings(status="pending").findings
    first = pending[0]
    next(b for b in at.button if b.key == f"pii_dis_{first['id']}").click().run()
    assert not at.exception
    assert wb.store.pii_finding(first["id"])["status"] == "dismissed"

    # bulk accept every pending PERSON finding
    at.selectbox(key="pii_entity").select("PERSON").run()
    n_person = wb.pii_findings(status="pending", entity="PERSON").total
    bulk = at.button(key="pii_bulk")
    assert bulk.label.startswith(f"Accept all {n_person} pending PERSON findings")
    bulk.click().run()
    assert wb.pii_findings(status="pending", entity="PERSON").total == 0
    assert wb.pii_findings(status="accepted", entity="PERSON").total == n_person

    # add a missed span by its text
    cid = next(c["id"] for c in wb.list().conversations if "Tomasz" in c["preview"])
    at.text_input(key="pii_add_cid").input(cid)
    at.number_input(key="pii_add_msg").set_value(1)  # message 1 ("ok")
    at.text_input(key="pii_add_text").input("ok")
    add = next(b for b in at.button if "Add finding" in b.label)
    add.click().run()
    assert not at.exception
    added = wb.pii_findings(status="added").findings
    assert [(f["conversation_id"], f["message_index"], f["start"], f["end"]) for f in added] == [(cid, 1, 0, 2)]

    # redact from the page: a scan, a preview that writes nothing, then the confirmed redaction
    at = page()
    next(b for b in at.button if b.label.startswith("Redact")).click().run()
    assert not at.exception, at.exception
    assert all(c["revision"] == 1 for c in wb.list().conversations)  # only a preview so far
    shown = " ".join(m.value for m in at.markdown)
    assert "Would rewrite 2 conversation" in shown and "PHONE\\_NUMBER" in shown, shown
    assert any("before: " in t.value and "after:  " in t.value for t in at.text)
    confirm = at.button(key="pii_confirm")
    assert confirm.label == "Confirm: redact 2 conversation(s)"
    confirm.click().run()
    assert not at.exception, at.exception
    assert any("redacted" in s.value and "reused" in s.value for s in at.success), [e.value for e in at.error]
    assert wb.store.pii_unresolved_conversations() == set()
    assert all(c["revision"] == 2 for c in wb.list().conversations)


def test_pii_page_bulk_dismiss_by_text_counts_confirms_and_remembers(store) -> None:
    wb = store
    at = page()
    queue = wb.pii_queue(status="pending", limit=100).findings
    n = sum(1 for f in queue if f["entity"] == "PERSON")
    maria = [f for f in queue if f["text"] and f["text"][f["start"] : f["end"]] == "Maria Gonzalez"]
    k = len(maria)
    assert k >= 1 and {f["entity"] for f in maria} == {"PERSON"}
    at.text_input(key="pii_b_text").input("Maria Gonzalez").run()
    # captions and messages are markdown-escaped: compare without the backslashes
    assert any(f"{k} pending finding(s) match: {k} PERSON" in c.value.replace("\\", "") for c in at.caption), [
        c.value for c in at.caption
    ]
    at.checkbox(key="pii_b_remember").check().run()
    go = at.button(key="pii_b_go")
    assert go.label == f"Confirm: dismiss {k} finding(s)"
    go.click().run()
    assert not at.exception, at.exception
    assert wb.pii_findings(status="dismissed", entity="PERSON").total == k
    assert wb.pii_findings(status="pending", entity="PERSON").total == n - k
    assert [t["term"] for t in wb.pii_allow_list().terms] == ["Maria Gonzalez"]
    # the counters are right at once, and a rescan no longer reports the remembered term
    assert any(f"{k} finding(s) dismissed" in s.value.replace("\\", "") for s in at.success)
    wb.pii_scan_report(actor="ana")
    assert wb.pii_findings(status="pending", entity="PERSON").total == n - k
