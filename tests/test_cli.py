"""The real `sift` command in subprocesses: JSON contracts and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_sift, write


def test_import_stats_list_show_quarantine(store_path: Path, corpora: Path, tmp_path: Path) -> None:
    f = corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl"
    bad = write(
        tmp_path / "b.jsonl",
        '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\nnot json\n',
    )
    r = run_sift("import", str(f), str(bad), "--json", store=store_path, check=True)
    out = json.loads(r.stdout)
    assert set(out) == {"files", "totals"}
    assert set(out["files"][0]) == {"path", "format", "rows", "imported", "already_present", "quarantined", "encoding"}
    assert out["totals"] == {"rows": 12, "imported": 6, "already_present": 5, "quarantined": 1}
    stats = json.loads(run_sift("stats", "--json", store=store_path, check=True).stdout)
    assert stats == {
        "conversations": 6,
        "revisions": 6,
        "quarantined": 1,
        "sources": 2,
        "by_status": {"pending": 6, "accepted": 0, "rejected": 0},
    }
    listed = json.loads(run_sift("list", "--limit", "3", "--json", store=store_path, check=True).stdout)
    assert listed["total"] == 6 and len(listed["conversations"]) == 3
    cid = listed["conversations"][0]["id"]
    shown = json.loads(run_sift("show", cid, "--json", store=store_path, check=True).stdout)
    assert {"id", "status", "revision", "messages", "tools", "provenance", "history"} <= set(shown)
    q = json.loads(run_sift("quarantine", "--json", store=store_path, check=True).stdout)
    assert q["total"] == 1 and {k: q["rows"][0][k] for k in ("line", "field")} == {"line": 2, "field": "(line)"}
    assert set(q["rows"][0]) >= {"file", "line", "field", "message"}
    assert run_sift("accept", cid, store=store_path, check=True).returncode == 0
    assert json.loads(run_sift("list", "--status", "accepted", "--json", store=store_path).stdout)["total"] == 1
    assert json.loads(run_sift("list", "--source", "b.jsonl", "--json", store=store_path).stdout)["total"] == 1


def test_errors_are_one_line(store_path: Path, tmp_path: Path) -> None:
    r = run_sift("import", str(tmp_path / "missing.json"), store=store_path)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "no such file" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_sift("list", "--bogus", store=store_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: sift: unrecognized arguments: --bogus"
    r = run_sift("show", "deadbeef", store=store_path)
    assert r.returncode == 1 and r.stderr.strip() == "error: no conversation 'deadbeef'"
    r = run_sift("reject", "x", store=store_path)
    assert r.returncode == 2 and "reject needs --reason" in r.stderr


def test_store_from_env(tmp_path: Path) -> None:
    f = write(tmp_path / "a.json", json.dumps([{"instruction": "x", "output": "y"}]))
    run_sift("import", str(f), env={"SIFT_STORE": str(tmp_path / "e.duckdb")}, check=True)
    assert (tmp_path / "e.duckdb").exists()


def test_every_command_is_documented() -> None:
    from workbench.cli import build_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"sift {name}" not in readme]
    assert not missing, f"commands missing from README: {missing}"
