"""The Home page's pipeline (live counts, blockers, next step) and the Train page's presets
(estimated time, freeze-first hint), over a real temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, write
from workbench.services.train_presets import PRESETS, estimate_seconds

PAGES = ROOT / "workbench" / "app_pages"


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "app.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "no-reviewers.toml"))
    return path


def rows(n: int) -> str:
    return json.dumps(
        [{"instruction": f"question number {i} about invoices", "output": f"answer {i}"} for i in range(n)]
    )


def test_pipeline_counts_blockers_and_next_step(store: Path, tmp_path: Path) -> None:
    wb = workbench.open(store)
    p = wb.pipeline()
    assert p.next.step == "import" and not p.steps[0].done
    wb.import_files([write(tmp_path / "a.json", rows(12))], actor="ana")
    p = wb.pipeline()
    steps = {s.step: s for s in p.steps}
    assert steps["import"].done and steps["import"].counts["conversations"] == 12
    assert p.next.step == "validate" and p.next.page == "validate"
    assert {k: v for k, v in p.blockers[0].to_dict().items() if k != "what"} == {
        "reason": "pending",
        "conversations": 12,
    }
    wb.dedup(actor="ana")
    ids = [c["id"] for c in wb.list(limit=20).conversations]
    wb.accept(ids[:5], actor="ana")
    wb.edit(
        ids[0],
        [{"role": "user", "content": "edited"}, {"role": "assistant", "content": "ok"}],
        base_revision=1,
        actor="ana",
    )
    p = wb.pipeline()
    steps = {s.step: s for s in p.steps}
    assert steps["review"].counts["accepted"] == 5 and steps["review"].counts["pending"] == 7
    # The edit made a revision dedup never saw: dedup is not done, and freezing would refuse it.
    assert not steps["dedup"].done and steps["dedup"].counts["unchecked"] == 1
    assert any(b.reason == "unchecked_dedup" and b.conversations == 1 for b in p.blockers)

    at = AppTest.from_file(str(PAGES / "home.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Next: Validate" in m.value for m in at.markdown)
    assert any("5 accepted · 0 rejected · 7 pending" in c.value for c in at.caption)
    assert at.button(key="home_next").label == "Go to Validate →"


def test_train_presets_estimate_and_freeze_hint(store: Path, tmp_path: Path) -> None:
    wb = workbench.open(store)
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Freeze a version first" in i.value for i in at.info)

    wb.import_files([write(tmp_path / "a.json", rows(40))], actor="ana")
    wb.freeze("v1", include="not-rejected", actor="ana")
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=60).run()
    assert not at.exception
    quick = next(m.value for m in at.markdown if "Estimated time on the CPU" in m.value)
    assert "20 steps" in quick
    assert at.number_input(key="cfg_max_steps").value == 20  # the preset filled the folded form
    at.radio(key="train_preset").set_value("QLoRA on one GPU (recommended)").run()
    assert not at.exception
    assert at.number_input(key="cfg_max_steps").value == -1
    assert any("Estimated time on one GPU" in m.value for m in at.markdown)


def test_estimate_scales_with_the_work() -> None:
    quick = next(p for p in PRESETS if p.device == "cpu")
    small = estimate_seconds(quick.changes, train_rows=100, eval_rows=10, mean_tokens=200, device="cpu")
    longer = estimate_seconds(quick.changes, train_rows=100, eval_rows=10, mean_tokens=400, device="cpu")
    assert small["steps"] == longer["steps"] == 20 and longer["train_s"] > small["train_s"]
    epochs = estimate_seconds({"num_train_epochs": 2.0}, train_rows=1600, eval_rows=0, mean_tokens=250, device="cpu")
    assert epochs["steps"] == 200  # 1600 × 2 / (4 × 4)
    no_counts = estimate_seconds({}, train_rows=10, eval_rows=0, mean_tokens=None, device="cuda")
    assert no_counts["assumed"] and no_counts["tokens_per_row"] == 512
