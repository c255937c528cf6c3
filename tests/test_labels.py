"""Label audit (curation/labels.py, `sift label-audit`): planted wrong labels in the seeded ticket
pool are found with the right suggestion, clean answers are left alone, and the flags land in the
store for review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tickets import generate_noisy

from curation.formats import map_openai
from curation.labels import LabelAuditConfig, answer_labels, audit_labels
from curation.records import Conversation, Message
from tests.conftest import run_sift


@pytest.fixture(scope="module")
def pool() -> dict:
    rows, truth = generate_noisy(5000, seed=3, eval_size=50)
    convs = [map_openai(r)[0] for r in rows]
    return {"rows": rows, "truth": truth, "convs": convs, "ids": [c.id for c in convs]}


def test_answer_labels_reads_the_trailing_json_object() -> None:
    def conv(answer: str) -> Conversation:
        return Conversation((Message("user", "hi"), Message("assistant", answer)))

    assert answer_labels(conv('Thanks.\n{"category":"bug","priority":"low","n":3}')) == {
        "category": "bug",
        "priority": "low",
    }
    assert answer_labels(conv("no labels here")) is None
    assert answer_labels(conv('broken {"category": "bug"')) is None
    assert answer_labels(Conversation((Message("user", "only a question"),))) is None


def test_planted_wrong_labels_are_found_with_the_true_label_suggested(pool: dict) -> None:
    ids, truth = pool["ids"], pool["truth"]
    audit = audit_labels({c.id: c for c in pool["convs"]})
    assert audit.fields == ["category", "priority", "product_area"] and not audit.skipped
    wrong = {ids[p["row"]]: p for p in truth["problems"] if p["kind"] == "wrong_label"}
    conflicting = {
        ids[p["row"]] for p in truth["problems"] if p["kind"] == "near_duplicate" and p.get("conflicting_labels")
    }
    flagged = audit.by_id()
    found = [i for i in wrong if i in flagged]
    assert len(found) / len(wrong) >= 0.95, (len(found), len(wrong))
    right = [
        s
        for s in audit.suspects
        if s.id in wrong and s.field == wrong[s.id]["field"] and s.suggested == wrong[s.id]["true_labels"][s.field]
    ]
    assert len(right) >= 0.95 * len(wrong)
    # Precision: a conflicting near-copy's label is label noise too; everything else counts against it.
    noise = set(wrong) | conflicting
    assert sum(1 for i in flagged if i in noise) / len(flagged) >= 0.85, len(flagged)
    for s in audit.suspects:
        assert s.p_suggested > s.p_given and s.given != s.suggested


def test_clean_data_is_left_alone_and_small_sets_are_skipped(pool: dict) -> None:
    kinds = {pool["ids"][p["row"]] for p in pool["truth"]["problems"]}
    clean = {c.id: c for c in pool["convs"] if c.id not in kinds}
    audit = audit_labels(clean)
    assert len(audit.by_id()) <= 0.02 * len(clean), len(audit.by_id())
    few = dict(list(clean.items())[:20])
    small = audit_labels(few)
    assert small.suspects == [] and all("labelled answers" in why for why in small.skipped.values())
    one_field = audit_labels(clean, LabelAuditConfig(fields=("priority",)))
    assert one_field.fields == ["priority"] and {s.field for s in one_field.suspects} <= {"priority"}


def test_label_audit_cli_flags_suspects_for_review(pool: dict, tmp_path: Path) -> None:
    store = tmp_path / "sift.duckdb"
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool["rows"][:800]))
    run_sift("import", str(path), store=store, check=True)
    r = run_sift("label-audit", "--json", store=store, check=True)
    out = json.loads(r.stdout)
    assert set(out) >= {"run_id", "conversations", "labelled", "fields", "skipped", "flagged", "suspects", "per_field"}
    assert out["fields"] == ["category", "priority", "product_area"] and out["flagged"] > 0
    listed = json.loads(run_sift("list", "--flag", "label_suspect", "--json", "--limit", "10000", store=store,
                                 check=True).stdout)  # fmt: skip
    assert len(listed["conversations"]) == out["flagged"]
    shown = json.loads(run_sift("show", listed["conversations"][0]["id"], "--json", store=store, check=True).stdout)
    (flag,) = [f for f in shown["flags"] if f["reason"] == "label_suspect"][:1]
    assert flag["severity"] == "warning" and {"field", "given", "suggested"} <= set(flag["details"])
    assert flag["details"]["given"] in flag["message"] and flag["details"]["suggested"] in flag["message"]
    # A second run replaces the first one's flags; a field no answer carries is a clear error.
    again = json.loads(run_sift("label-audit", "--json", store=store, check=True).stdout)
    assert again["flagged"] == out["flagged"]
    progress = json.loads(run_sift("progress", "--json", store=store, check=True).stdout)
    (row,) = [f for f in progress["flags"] if f["reason"] == "label_suspect"]
    assert row["conversations"] == out["flagged"]
    bad = run_sift("label-audit", "--field", "colour", store=store)
    assert bad.returncode != 0 and "colour" in bad.stderr

    # Applying a suggestion: a new revision with the suggested label; the old one stays; the flag goes.
    cid = listed["conversations"][0]["id"]
    before = json.loads(run_sift("show", cid, "--json", store=store, check=True).stdout)
    sugg = [f["details"] for f in before["flags"] if f["reason"] == "label_suspect"]
    applied = json.loads(run_sift("label-apply", cid, "unknown-id", "--json", store=store, check=True).stdout)
    assert applied["applied"] == 1 and applied["revisions"] == {cid: before["revision"] + 1}
    assert list(applied["skipped"]) == ["unknown-id"]
    after = json.loads(run_sift("show", cid, "--json", store=store, check=True).stdout)
    labels = json.loads(after["messages"][-1]["content"].rsplit("\n", 1)[-1])
    for d in sugg:
        assert labels[d["field"]] == d["suggested"]
    assert after["messages"][-1]["content"].rsplit("\n", 1)[0] == before["messages"][-1]["content"].rsplit("\n", 1)[0]
    assert not [f for f in after["flags"] if f["reason"] == "label_suspect"]
    old = json.loads(run_sift("show", cid, "--revision", str(before["revision"]), "--json", store=store,
                              check=True).stdout)  # fmt: skip
    assert old["messages"] == before["messages"]
    assert run_sift("label-apply", store=store).returncode != 0  # neither ids nor --all
    rest = json.loads(run_sift("label-apply", "--all", "--json", store=store, check=True).stdout)
    assert rest["applied"] == out["flagged"] - 1
    assert (
        json.loads(run_sift("list", "--flag", "label_suspect", "--json", store=store, check=True).stdout)[
            "conversations"
        ]
        == []
    )


def test_labels_page_runs_the_audit_and_lists_suspects(pool: dict, tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    store = tmp_path / "sift.duckdb"
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in pool["rows"][:600]))
    run_sift("import", str(path), store=store, check=True)
    monkeypatch.setenv("SIFT_STORE", str(store))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "no-reviewers.toml"))
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "labels.py"), default_timeout=60).run()
    assert not at.exception
    assert any("has not run" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Run label audit").click().run()  # nobody signed in: refused
    assert any("reviewer name" in w.value for w in at.warning)
    assert json.loads(run_sift("progress", "--json", store=store, check=True).stdout)["flags"] == []
    at.session_state["reviewer"] = "ana"
    next(b for b in at.button if b.label == "Run label audit").click().run()
    assert not at.exception, at.exception
    assert any("flagged label_suspect" in s.value for s in at.success)
    flagged = json.loads(run_sift("progress", "--json", store=store, check=True).stdout)["flags"]
    (row,) = [f for f in flagged if f["reason"] == "label_suspect"]
    suspects = at.dataframe[-1].value
    assert suspects["id"].nunique() == row["conversations"] and {"field", "given", "suggested"} <= set(suspects.columns)
    assert (suspects["given"] != suspects["suggested"]).all()
    first = sorted(set(suspects["id"]))[0]
    at.multiselect[0].select(first).run()
    next(b for b in at.button if b.label == "Apply to the chosen conversations").click().run()
    assert not at.exception and any("applied to 1 conversations" in s.value for s in at.success)
    shown = json.loads(run_sift("show", first, "--json", store=store, check=True).stdout)
    assert shown["revision"] == 2 and not [f for f in shown["flags"] if f["reason"] == "label_suspect"]
    assert first not in set(at.dataframe[-1].value["id"])  # the list no longer holds it
