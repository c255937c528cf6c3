"""`sift freeze / verify / export / diff / versions` in subprocesses, and the Versions page (AppTest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from streamlit.testing.v1 import AppTest
from tickets import generate_clean, ticket_row

import workbench
from tests.conftest import ROOT, run_sift, shown, write


def seed_store(store: Path, tmp_path: Path, n: int = 20) -> list[str]:
    rows = [ticket_row(item, "openai") for item in generate_clean(n, 11)]
    wb = workbench.open(store)
    wb.import_files([write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))], licence="MIT")
    ids = [c["id"] for c in wb.list(limit=100).conversations]
    wb.accept(ids, actor="ana")
    return ids


def test_freeze_verify_export_diff_versions(store_path: Path, tmp_path: Path) -> None:
    ids = seed_store(store_path, tmp_path)
    r = run_sift("freeze", "v1", "--eval-fraction", "0.25", "--seed", "3", "--json", store=store_path, check=True)
    out = json.loads(r.stdout)
    assert set(out) == {"version", "train", "eval", "excluded", "manifest_sha256"}
    assert (out["version"], out["train"], out["eval"], out["excluded"]) == ("v1", 15, 5, {})

    r = run_sift("freeze", "v1", store=store_path)
    assert r.returncode == 1
    assert r.stderr == "error: version 'v1' already exists and is frozen; freeze under a new name\n"

    wb = workbench.open(store_path)
    wb.reject(ids[:2], "stale", actor="ana")
    preview = wb.freeze("v2", eval_fraction=0.25, seed=3, parent="v1", dry_run=True)
    assert preview.excluded == {"rejected": 2} and preview.leakage == []
    run_sift("freeze", "v2", "--eval-fraction", "0.25", "--seed", "3", "--parent", "v1", store=store_path, check=True)

    listed = json.loads(run_sift("versions", "--json", store=store_path, check=True).stdout)["versions"]
    assert [(v["name"], v["parent"], v["train"] + v["eval"]) for v in listed] == [("v1", None, 20), ("v2", "v1", 18)]
    assert set(listed[0]) == {"name", "created_at", "actor", "parent", "train", "eval", "manifest_sha256"}

    diff = json.loads(run_sift("diff", "v1", "v2", "--json", store=store_path, check=True).stdout)
    assert set(diff) == {"a", "b", "splits", "moved"}
    removed = diff["splits"]["train"]["removed"] + diff["splits"]["eval"]["removed"]
    assert set(ids[:2]) <= set(removed)

    out_dir = tmp_path / "export"
    r = run_sift("export", "v1", "--format", "openai", "--out", str(out_dir), "--json", store=store_path, check=True)
    exported = json.loads(r.stdout)
    assert exported["files"].keys() == {"train.jsonl", "eval.jsonl", "README.md"}
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["manifest_sha256"] == out["manifest_sha256"] and "train.jsonl" in manifest["files"]
    assert len((out_dir / "train.jsonl").read_text().splitlines()) == 15

    assert wb.verify_version("v1", out_dir).to_dict() == {"version": "v1", "ok": True, "problems": []}
    with open(out_dir / "train.jsonl", "a") as f:
        f.write('{"messages": [{"role": "user", "content": "sneaked in"}, {"role": "assistant", "content": "x"}]}\n')
    r = run_sift("verify", "v1", "--export", str(out_dir), "--json", store=store_path)
    assert r.returncode == 1
    assert json.loads(r.stdout) == {
        "version": "v1",
        "ok": False,
        "problems": ["train.jsonl: modified (its sha256 differs from manifest.json)"],
    }


def test_leakage_refusal_is_one_line(store_path: Path, tmp_path: Path) -> None:
    seed_store(store_path, tmp_path, n=8)
    wb = workbench.open(store_path)
    # The same exchange twice, once under a system prompt: different conversations, same content.
    pair = [
        {
            "messages": [
                {"role": "user", "content": "Reset my password?"},
                {"role": "assistant", "content": "Use the console."},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "reset my  password?"},
                {"role": "assistant", "content": "Use the console."},
            ]
        },
    ]
    wb.import_files([write(tmp_path / "pair.jsonl", "".join(json.dumps(r) + "\n" for r in pair))])
    wb.accept([c["id"] for c in wb.list(status="pending").conversations])
    seed = next(s for s in range(100) if wb.freeze("x", eval_fraction=0.5, seed=s, dry_run=True).leakage)
    r = run_sift("freeze", "v1", "--eval-fraction", "0.5", "--seed", str(seed), store=store_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: refusing to freeze: 1 eval conversation(s) duplicate train (eval ")
    r = run_sift(
        "freeze", "v1", "--eval-fraction", "0.5", "--seed", str(seed), "--dry-run", store=store_path, check=True
    )
    assert re.search(r"^leakage check \((exact|near_duplicate)\): 1 eval/train pair\(s\)$", r.stdout, re.M)
    assert workbench.open(store_path).versions().versions == []


def test_versions_page_previews_freezes_diffs_and_zips(store_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIFT_STORE", str(store_path))
    page = str(ROOT / "workbench" / "app_pages" / "versions.py")
    at = AppTest.from_file(page, default_timeout=60).run()
    assert not at.exception and any("No versions yet" in c.value for c in at.caption)

    seed_store(store_path, tmp_path)
    at = AppTest.from_file(page, default_timeout=60).run()
    at.text_input(key="freeze_name").input("v1").run()
    at.button[0].click().run()  # Preview
    assert not at.exception
    assert [m.value for m in at.metric] == ["18", "2", "0"]
    assert any("no eval conversation duplicates train" in s.value for s in at.success)
    at.button[1].click().run()  # Freeze, with no reviewer: refused
    assert any("reviewer name" in w.value for w in at.warning)
    at.session_state["reviewer"] = "ana"
    at.button[1].click().run()
    assert not at.exception and any("Froze v1: 18 train, 2 eval." in shown(s.value) for s in at.success)
    wb = workbench.open(store_path)
    assert [v["actor"] for v in wb.versions().versions] == ["ana"]

    wb.freeze("v2", eval_fraction=0.3, actor="ana")
    at = AppTest.from_file(page, default_timeout=60).run()
    assert at.dataframe[0].value.shape[0] == 2
    diff = next(d.value for d in at.dataframe if "split" in d.value.columns)  # the diff v1 → v2
    assert (
        list(diff["split"]) == ["train", "eval"] and list(diff["added"]) == [0, 4] and list(diff["removed"]) == [4, 0]
    )
    next(b for b in at.button if b.label == "Verify").click().run()
    assert any("every hash recomputes" in s.value for s in at.success)
    next(b for b in at.button if b.label == "Prepare zip").click().run()
    assert not at.exception
    assert any(el.type == "download_button" for el in at.get("download_button"))


def test_versions_page_asks_before_freezing_rows_changed_since_validation(
    store_path: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("SIFT_STORE", str(store_path))
    ids = seed_store(store_path, tmp_path)
    wb = workbench.open(store_path)
    wb.store.start_stage_run("val-1", "validate", {"model": "m", "max_seq_len": 2048}, actor="ci")
    wb.store.replace_flags("validate", "val-1", [])
    d = wb.show(ids[0])
    wb.edit(ids[0], [*d.messages[:-1], {"role": "assistant", "content": "edited"}], base_revision=1, actor="ana")
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "versions.py"), default_timeout=60)
    at.session_state["reviewer"] = "ana"
    at.run()
    at.text_input(key="freeze_name").input("v1").run()
    next(b for b in at.button if b.label == "Preview").click().run()
    assert any("1 after the last validate run" in w.value for w in at.warning)
    freeze = next(b for b in at.button if b.label == "Freeze")
    assert freeze.disabled
    at.checkbox[-1].check().run()
    next(b for b in at.button if b.label == "Freeze").click().run()
    assert not at.exception and any("Froze v1" in s.value for s in at.success)
    assert [v["name"] for v in wb.versions().versions] == ["v1"]
