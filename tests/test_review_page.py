"""AppTest for the Review page over a real store: the queue, accept/reject/skip/comment/tags, edit
and delete a turn (a new revision shown as a diff), conflicts as st.error, flags and highlighted
spans shown as text, bulk actions with a confirmed count, the guide rendered without HTML or images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, shown, write

PAGE = str(ROOT / "workbench" / "app_pages" / "review.py")


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    path = tmp_path / "review.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "no-reviewers.toml"))
    wb = workbench.open(path)
    wb.store.db.keep_open_s = 5
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
                {"role": "user", "content": "thanks"},
            ]
        }
        for i in range(5)
    ]
    wb.import_files([write(tmp_path / "five.jsonl", "\n".join(json.dumps(r) for r in rows))], actor="loader")
    return wb


def page(reviewer: str | None = "ana") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if reviewer:
        at.session_state["reviewer"] = reviewer
    return at.run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if label in b.label)


def test_review_queue_actions(store) -> None:
    wb = store
    order = [c["id"] for c in wb.list(limit=10).conversations]
    at = page(reviewer=None)
    assert not at.exception
    assert any("Identify yourself" in i.value for i in at.info)
    assert at.subheader[0].value == f"Conversation {order[0]}"
    assert button(at, "Accept").disabled and button(at, "Reject").disabled
    at.session_state["reviewer"] = "ana"
    at.run()
    button(at, "Accept").click().run()
    assert next(shown(s.value) for s in at.success) == f"Accepted {order[0]}."
    assert at.subheader[0].value == f"Conversation {order[1]}"
    button(at, "Reject").click().run()  # no reason yet
    assert any("Give a reason for rejecting" in shown(e.value) for e in at.error)
    at.text_input(key=f"rv_reason_{order[1]}").input("answer is wrong").run()
    button(at, "Reject").click().run()
    assert at.subheader[0].value == f"Conversation {order[2]}"
    button(at, "Skip").click().run()
    assert at.subheader[0].value == f"Conversation {order[3]}"
    at.text_area[0].input("is this a duplicate?")
    button(at, "Add comment").click().run()
    assert "Comment added." in [shown(s.value) for s in at.success]
    at.multiselect(key=f"rv_tags_{order[3]}_1").set_value(["billing"]).run()
    button(at, "Save tags").click().run()
    assert not at.exception
    statuses = {c["id"]: c["status"] for c in wb.list(limit=10).conversations}
    assert [statuses[i] for i in order] == ["accepted", "rejected", "pending", "pending", "pending"]
    h = wb.show(order[1]).history
    assert [(e["actor"], e["status"], e["reason"]) for e in h if e["kind"] == "status"] == [
        ("ana", "rejected", "answer is wrong")
    ]
    d = wb.show(order[3])
    assert d.tags == ["billing"] and [(e["actor"], e["text"]) for e in d.history if e["kind"] == "comment"] == [
        ("ana", "is this a duplicate?")
    ]
    # To the end of the pending queue and back to the top (where the skipped one waits).
    button(at, "Skip").click().run()
    button(at, "Skip").click().run()
    assert any("end of the queue" in s.value for s in at.success)
    button(at, "Start again from the top").click().run()
    assert at.subheader[0].value == f"Conversation {order[2]}"


def test_edit_and_delete_a_turn_makes_a_revision_with_a_diff(store) -> None:
    wb = store
    cid = wb.list(limit=1).conversations[0]["id"]
    at = page()
    at.toggle(key=f"rv_editing_{cid}_1").set_value(True).run()
    at.text_area(key=f"rv_t_{cid}_1_1").input("answer 0, with the missing step")
    at.checkbox(key=f"rv_del_{cid}_1_2").check()
    button(at, "Save as revision 2").click().run()
    assert not at.exception and "Saved revision 2." in [shown(s.value) for s in at.success]
    d = wb.show(cid)
    assert d.current_revision == 2 and [m["content"] for m in d.messages] == [
        "question 0",
        "answer 0, with the missing step",
    ]
    rev = next(h for h in d.history if h.get("revision") == 2)
    assert (rev["actor"], rev["note"]) == ("ana", "edited turn 2; deleted turn 3")
    diff = [c.value for c in at.code]
    assert any("-answer 0\n+answer 0, with the missing step" in c for c in diff) and "- thanks" in diff
    assert any("What changed in revision 2" in e.label for e in at.expander)
    # Nothing changed: nothing saved.
    at.toggle(key=f"rv_editing_{cid}_2").set_value(True).run()
    button(at, "Save as revision 3").click().run()
    assert any("Nothing changed" in shown(i.value) for i in at.info) and wb.show(cid).current_revision == 2


def test_conflicts_are_refused_with_an_error(store) -> None:
    wb = store
    cid = wb.list(limit=1).conversations[0]["id"]
    at = page()
    at.toggle(key=f"rv_editing_{cid}_1").set_value(True).run()
    # Bob saves first, from the CLI or another browser.
    msgs = wb.show(cid).messages
    wb.edit(cid, [msgs[0], {**msgs[1], "content": "bob's answer"}], base_revision=1, actor="bob")
    at.text_area(key=f"rv_t_{cid}_1_1").input("ana's answer")
    button(at, "Save as revision 2").click().run()
    assert any(
        "changed since you opened it (you saw revision 1, it is now at revision 2)" in shown(e.value) for e in at.error
    )
    d = wb.show(cid)
    assert d.current_revision == 2 and d.messages[1]["content"] == "bob's answer"
    assert any("Someone changed this conversation" in w.value for w in at.warning)
    # Accepting the stale view is refused too; loading the latest lets the review go on.
    at.toggle(key=f"rv_editing_{cid}_1").set_value(False).run()
    button(at, "Accept").click().run()
    assert any("nothing was overwritten" in shown(e.value) for e in at.error) and wb.show(cid).status == "pending"
    button(at, "Load the latest").click().run()
    assert not at.warning and "revision 2" in at.caption[0].value
    button(at, "Accept").click().run()
    assert wb.show(cid).status == "accepted"


def test_flags_inline_with_spans_highlighted_as_text(store) -> None:
    wb = store
    cid = wb.list(limit=1).conversations[0]["id"]
    text = "Mail ana@example.com <img src=x onerror=alert(1)> ![p](http://evil.example/p.png) $x$ :red[y]"
    msgs = wb.show(cid).messages
    wb.edit(cid, [{"role": "user", "content": text}, msgs[1]], base_revision=1, actor="loader")
    start = text.index("ana@")
    flags = [
        {
            "conversation_id": cid,
            "revision": 2,
            "reason": "pii_found",
            "severity": "warning",
            "message": "1 finding",
            "details": {
                "findings": [
                    {
                        "message_index": 0,
                        "field": "content",
                        "start": start,
                        "end": start + 15,
                        "entity": "EMAIL_ADDRESS",
                    }
                ]
            },
        },
        {
            "conversation_id": cid,
            "revision": 2,
            "reason": "empty_system",
            "severity": "error",
            "message": "<b>no system</b>",
        },
        {
            "conversation_id": cid,
            "revision": 2,
            "reason": "long_turn",
            "severity": "warning",
            "message": "turn 2 is long",
            "details": {"message_index": 1},
        },
    ]
    wb.store.start_stage_run("r1", "pii", {}, actor="loader")
    wb.store.replace_flags("pii", "r1", flags)
    at = page()
    assert not at.exception
    md = [m.value for m in at.markdown]
    high = next(m for m in md if "orange-background" in m)
    assert high.startswith("Mail :orange-background[ana\\@example\\.com] :orange-badge[EMAIL\\_ADDRESS] \\<img")
    assert "\\<img src\\=x onerror\\=alert\\(1\\)\\>" in high and "\\!\\[p\\]\\(http\\:" in high
    assert "\\$x\\$ \\:red\\[y\\]" in high
    assert not [m for m in md if re.search(r"(?<!\\)<(img|b)", m)]  # every < from data is escaped
    assert [e.value for e in at.error] == ["pii · empty\\_system\\: \\<b\\>no system\\<\\/b\\>"]
    assert "pii · long\\_turn\\: turn 2 is long" in [w.value for w in at.warning]
    # The flag filter lists the reasons in the store.
    at.selectbox(key="rvf_flag").set_value("long_turn").run()
    assert "1 match this filter" in at.caption[0].value


def test_bulk_actions_state_the_count_and_need_confirmation(store) -> None:
    wb = store
    at = page()
    at.text_input(key="rvf_text").input("question").run()
    assert not [r for r in at.radio if r.key == "rv_bulk_action"]  # drawn only when opened
    at.session_state["rv_bulk_open"] = True  # what opening the expander sets
    at.run()
    at.radio(key="rv_bulk_action").set_value("Accept").run()
    button(at, "Count and ask me to confirm").click().run()
    assert any("This will mark accepted 5 conversations" in w.value for w in at.warning)
    assert wb.count(status="accepted") == 0  # nothing until confirmed
    # Someone accepts one meanwhile: the confirmation no longer holds.
    one = wb.list(limit=1).conversations[0]["id"]
    wb.decide(one, "accepted", expected_revision=1, expected_status="pending", actor="bob")
    button(at, "Confirm: mark accepted 5 conversations").click().run()
    assert any("not the 5 you confirmed" in shown(e.value) for e in at.error) and wb.count(status="accepted") == 1
    button(at, "Count and ask me to confirm").click().run()
    button(at, "Confirm: mark accepted 4 conversations").click().run()
    assert "Done: mark accepted 4 conversations." in [shown(s.value) for s in at.success]
    assert wb.count(status="accepted") == 5
    at.selectbox(key="rvf_status").set_value("any").run()
    at.radio(key="rv_bulk_action").set_value("Add tags").run()
    at.multiselect(key="rv_bulk_tags").set_value(["batch-7"]).run()
    button(at, "Count and ask me to confirm").click().run()
    button(at, "Confirm: tag 5 conversations").click().run()
    assert wb.count(tag="batch-7") == 5


def test_guide_is_markdown_without_html_or_remote_images(store) -> None:
    wb = store
    guide = "# Our guide\n\nSee ![chart](https://remote.example/x.png) and <img src='https://remote.example/y.png'>\n\n```\n<keep> ![code](x)\n```\n"
    wb.set_review_guide(guide, actor="lead")
    wb.set_review_tags(["billing", "refund"], actor="lead")
    wb.set_reject_reasons(["wrong answer"], actor="lead")
    at = page()
    shown = next(m.value for m in at.markdown if "Our guide" in m.value)
    assert "\\![chart](https://remote.example/x.png)" in shown and "\\<img src=" in shown
    assert "```\n<keep> ![code](x)\n```" in shown  # code blocks stay as written: they render as text
    assert at.multiselect(key=f"rv_tags_{wb.list(limit=1).conversations[0]['id']}_1").options == [
        "billing",
        "refund",
    ]
    # Editing the guide from the page (anyone identified, when there is no reviewer list).
    at.toggle(key="rv_settings_open").set_value(True).run()
    at.text_area(key="rv_guide_text").input("## New guide\nAccept only correct answers.")
    button(at, "Save guide and lists").click().run()
    assert wb.review_guide() == "## New guide\nAccept only correct answers."
    assert any("New guide" in m.value for m in at.markdown)
