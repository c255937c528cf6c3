"""Validation through the workbench: results cached per revision and per (tokenizer, template),
flags in the store, and the Validate page (AppTest) over a real temporary store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from curation.validate import ValidateError
from tests.chat_templates import GEMMA
from tests.conftest import ROOT, write

TOY = ("openai-cheat-sheet", "toy_chat_fine_tuning.jsonl")


def _no_user_id(wb: Any) -> str:
    [row] = wb.list(flag="first_turn_not_user").conversations
    return row["id"]


def test_results_are_cached_per_revision_and_identity(wb: Any, corpora: Path, tmp_path: Path) -> None:
    wb.import_files([corpora.joinpath(*TOY), corpora / "axolotl" / "conversation.missingturns.json"], actor="ana")
    first = wb.validate(actor="ana")
    assert first.checked == first.rechecked == 6  # toy rows 9 and 10 repeat row 4
    assert first.flagged == {"empty_content": 1, "first_turn_not_user": 1, "over_max_seq_len": 1}
    assert first.passed == 3 and first.over_max_seq_len == 1
    assert first.model == "smollm2-135m-instruct" and len(first.template_sha256) == 64
    assert set(first.tokens.to_dict()) == {"total", "p50", "p90", "p99", "max"} and first.tokens.max > 2048

    # Nothing changed: nothing is rendered again, the answer is the same.
    again = wb.validate(actor="ana")
    assert again.rechecked == 0
    assert (again.checked, again.passed, again.flagged, again.tokens) == (
        first.checked,
        first.passed,
        first.flagged,
        first.tokens,
    )

    # An edit makes a new revision: only it is validated again, and its flag goes.
    cid = _no_user_id(wb)
    d = wb.show(cid)
    fixed = [d.messages[0], {"role": "user", "content": "Cheer me up."}, *d.messages[1:]]
    wb.edit(cid, fixed, base_revision=d.revision, actor="ana")
    after = wb.validate(actor="ana")
    assert after.rechecked == 1 and after.flagged == {"empty_content": 1, "over_max_seq_len": 1}
    assert wb.list(flag="first_turn_not_user").total == 0
    assert wb.show(cid, revision=1).flags == []  # flags belong to the current revision

    # A new limit or severity needs no rendering.
    roomy = wb.validate(max_seq_len=16384, severity={"empty_content": "warning"}, actor="ana")
    assert roomy.rechecked == 0 and roomy.over_max_seq_len == 0
    assert roomy.flagged == {} and roomy.passed == 6
    assert roomy.warnings == {"empty_content": 1, "template_adds_system_prompt": 2}
    flags = wb.show(wb.list(flag="empty_content").conversations[0]["id"]).flags
    [shown] = [f for f in flags if f["reason"] == "empty_content"]
    assert (shown["stage"], shown["severity"], shown["details"]) == ("validate", "warning", {"message_index": 1})

    # Another template (a real tokenizer folder whose template refuses system turns): all re-rendered.
    from curation.models import load_tokenizer

    tok = load_tokenizer()
    tok.chat_template = GEMMA
    folder = tmp_path / "gemma-style"
    tok.save_pretrained(folder)
    other = wb.validate(model=str(folder), actor="ana")
    assert other.rechecked == 6 and other.template_sha256 != first.template_sha256
    assert other.flagged["template_error"] == 4  # every row with a system prompt
    refused = wb.list(flag="template_error", limit=1).conversations[0]["id"]
    [flag] = [f for f in wb.show(refused).flags if f["reason"] == "template_error"]
    assert flag["message"].startswith("the chat template refuses this conversation: System role not supported")
    # Folding the system prompt into the first user turn: those rows render (stored with the run).
    folded = wb.validate(model=str(folder), system_prompt="fold", actor="ana")
    assert "template_error" not in folded.flagged and folded.system_prompt == "fold"
    assert wb.validation_summary().config["system_prompt"] == "fold"

    # Back to the embedded model: its cached results are reused.
    back = wb.validate(actor="ana")
    assert back.rechecked == 0 and back.flagged == after.flagged
    counts = wb.store.token_counts([(r["id"], r["revision"]) for r in wb.list(limit=100).conversations])
    assert len(counts) == 6 and max(counts.values()) == first.tokens.max
    runs = wb.store.stage_runs("validate")
    assert len(runs) == 7 and runs[-1]["config"]["identity"] and runs[-1]["config"]["max_seq_len"] == 2048


def test_unknown_model_and_bad_config_are_domain_errors(wb: Any) -> None:
    with pytest.raises(ValidateError, match=r"^cannot load the tokenizer of '/nonexistent/model'"):
        wb.validate(model="/nonexistent/model")
    with pytest.raises(ValidateError, match="max_seq_len must be a positive number of tokens, got -1"):
        wb.validate(max_seq_len=-1)


def test_inspect_shows_the_rendered_text_and_the_loss_tokens(wb: Any, tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.jsonl",
        '{"messages": [{"role": "user", "content": "<script>alert(1)</script>"}, '
        '{"role": "assistant", "content": "**not bold** <b>x</b>"}]}\n',
    )
    wb.import_files([f], actor="ana")
    cid = wb.list().conversations[0]["id"]
    d = wb.inspect_validation(cid)
    assert d.id == cid and d.revision == 1
    assert [f["reason"] for f in d.flags] == ["template_adds_system_prompt"]  # SmolLM2's own system prompt
    assert [s["text"] for s in d.segments if s["loss"]] == ["**not bold** <b>x</b><|im_end|>\n"]
    # Before validation `show` has no token counts; after it, the revision carries them per turn.
    before = wb.show(cid)
    assert not before.measured and "tokens" not in before.to_dict()
    wb.validate(actor="ana")
    shown = wb.show(cid)
    assert shown.measured and shown.tokens == d.tokens and shown.trained_tokens == d.loss_tokens
    assert [t["tokens"] for t in shown.turns] == d.turn_tokens and shown.turns[0]["trained_tokens"] == 0
    assert shown.turns[1]["trained_tokens"] == d.loss_tokens
    assert shown.history[0]["tokens"] == d.tokens


@pytest.fixture
def app_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "app.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    return path


def test_validate_page_runs_shows_counts_histogram_and_drill_down(app_store: Path, tmp_path: Path) -> None:
    rows = [
        '{"messages": [{"role": "user", "content": "q<script>alert(1)</script>"}, '
        '{"role": "assistant", "content": "<b>bold</b> answer"}]}',
        '{"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "no user"}]}',
    ]
    wb = workbench.open(app_store)
    wb.import_files([write(tmp_path / "a.jsonl", "\n".join(rows) + "\n")], actor="ana")
    page = str(ROOT / "workbench" / "app_pages" / "validate.py")
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception
    assert any("has not run" in i.value for i in at.info)
    at.button[0].click().run()  # no reviewer yet: refused
    assert any("reviewer name" in w.value for w in at.warning)
    at.session_state["reviewer"] = "ana"
    at.number_input[0].set_value(64)
    at.button[0].click().run()
    assert not at.exception
    assert any("2 conversations checked, 1 passed" in s.value for s in at.success)
    assert [m.value for m in at.metric][:4] == ["2", "1", "1", "0"]
    problems = at.dataframe[0].value
    assert list(problems["reason"]) == ["first_turn_not_user", "template_adds_system_prompt"]
    assert list(problems["conversations"]) == [1, 1]
    [chart] = at.get("vega_lite_chart")  # the token-length histogram with the limit line
    assert '"rule"' in chart.proto.spec and '"bar"' in chart.proto.spec
    # Drill-down on the clean row: its rendered template, with the loss tokens highlighted.
    at.selectbox[0].set_value("(any conversation)").run()
    clean = wb.list(text="alert").conversations[0]["id"]
    at.selectbox[1].set_value(clean).run()
    assert not at.exception
    rendered = [m.value for m in at.markdown if "orange-background" in m.value]
    assert len(rendered) == 1
    assert "<b>" not in rendered[0] and "\\<b\\>bold\\<\\/b\\> answer" in rendered[0]
    assert "<script>" not in "".join(m.value for m in at.markdown)
