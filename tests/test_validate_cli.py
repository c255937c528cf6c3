"""`sift validate` in a subprocess: the JSON contract, `sift list --flag`, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import workbench
from tests.conftest import run_sift


def test_validate_json_contract_and_list_by_flag(store_path: Path, corpora: Path) -> None:
    workbench.open(store_path).import_files(
        [corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl"], actor="ana"
    )
    r = run_sift("validate", "--json", store=store_path, check=True)
    out = json.loads(r.stdout)
    assert list(out) == [
        "model",
        "template_sha256",
        "checked",
        "passed",
        "flagged",
        "warnings",
        "tokens",
        "over_max_seq_len",
        "system_prompt",
    ]
    assert out["model"] == "smollm2-135m-instruct" and len(out["template_sha256"]) == 64
    assert (out["checked"], out["passed"], out["over_max_seq_len"]) == (5, 3, 1)
    assert out["flagged"] == {"first_turn_not_user": 1, "over_max_seq_len": 1}
    assert out["warnings"] == {"template_adds_system_prompt": 1}  # SmolLM2 adds its own to the row without one
    assert list(out["tokens"]) == ["total", "p50", "p90", "p99", "max"] and out["tokens"]["max"] > 2048
    listed = json.loads(run_sift("list", "--flag", "over_max_seq_len", "--json", store=store_path, check=True).stdout)
    assert listed["total"] == 1
    shown = json.loads(run_sift("show", listed["conversations"][0]["id"], "--json", store=store_path).stdout)
    [flag] = shown["flags"]
    assert (flag["stage"], flag["reason"], flag["severity"]) == ("validate", "over_max_seq_len", "error")


def test_validate_errors_are_one_line(store_path: Path) -> None:
    r = run_sift("validate", "--warn", "bogus", store=store_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: unknown reason 'bogus' for --warn (known: unknown_role, ")
    r = run_sift("validate", "--max-seq-len", "0", store=store_path)
    assert r.returncode == 1 and r.stderr == "error: max_seq_len must be a positive number of tokens, got 0\n"
