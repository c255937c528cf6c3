"""Leakage (issue 10): PII canaries planted in imported data never appear in a redacted export, a
command's output or a training run's folder; an API key set in the environment never appears in
any file written — the store, exports, run folders, logs — during import, redaction, augmentation,
freezing, export and a training run.

Every file under the test's folder is scanned (parquet decoded too); the store files are exempt
from the canary scan only, since the store keeps the original revisions by design.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import workbench
from tests.conftest import run_sift, write
from tests.reliability_figures import record

KEY = "sk-sift-leak-7c1e5b9a3d2f4e6a8b0c"  # SIFT_LLM_API_KEY: must never be written anywhere
CANARIES = {
    "EMAIL_ADDRESS": "lumen.canary7@example.org",
    "PHONE_NUMBER": "(415) 555-0143",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN_CODE": "DE89370400440532013000",
    "US_SSN": "536-22-8726",
    "IP_ADDRESS": "192.168.44.201",
    "PERSON": "Margaret Hollingsworth",
    "STREET_ADDRESS": "1427 Maple Avenue",
    "SECRET": "sk-proj-CANARYq8x7f3a9c2b1d0e5f6a7b",
    "AWS": "AKIAIOSFODNN7CANARY1",
}
SENTENCES = [
    f"Hi, I am {CANARIES['PERSON']} and my email is {CANARIES['EMAIL_ADDRESS']}.",
    f"Call me at {CANARIES['PHONE_NUMBER']} about the charge on card {CANARIES['CREDIT_CARD']}.",
    f"Refund to IBAN {CANARIES['IBAN_CODE']}; my SSN is {CANARIES['US_SSN']}.",
    f"The server at {CANARIES['IP_ADDRESS']} rejects the key {CANARIES['SECRET']}.",
    f"Ship it to {CANARIES['STREET_ADDRESS']}, Springfield. AWS key {CANARIES['AWS']} leaked too.",
]
TINY_TRAIN = {
    "max_steps": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_seq_len": 128,
    "lora_r": 4,
    "lora_alpha": 8,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "max_new_tokens": 8,
    "eval_batch_size": 1,
    "eval_loss_limit": 1,
    "evaluate": False,  # generation adds a minute on a busy CPU and writes nothing the scan lacks
}


def canary_files(tmp: Path) -> list[Path]:
    """The canaries in every place a conversation keeps text: system, user, assistant, tool
    results, tool-call arguments, reasoning, a message's name, in three dialects."""
    openai = []
    for i, s in enumerate(SENTENCES):
        openai.append(
            {"messages": [
                {"role": "system", "content": f"Support bot {i}. Escalate to {CANARIES['EMAIL_ADDRESS']}."},
                {"role": "user", "content": f"Ticket {i}: {s}", "name": CANARIES["EMAIL_ADDRESS"]},
                {"role": "assistant", "content": None, "reasoning_content": f"The customer said: {s}",
                 "tool_calls": [{"id": f"c{i}", "type": "function",
                                 "function": {"name": "lookup", "arguments": json.dumps({"query": s})}}]},
                {"role": "tool", "tool_call_id": f"c{i}", "content": f"Record {i}: {s}"},
                {"role": "assistant", "content": f"Thanks. I noted: {s} We will get back to you {i}."},
            ]}
        )  # fmt: skip
    sharegpt = [
        {"conversations": [{"from": "human", "value": f"Case {i}: {s}"}, {"from": "gpt", "value": f"Sure, {s}"}]}
        for i, s in enumerate(SENTENCES)
    ]
    alpaca = [
        {"instruction": f"Reply to note {i}.", "input": s, "output": f"Dear customer, re {s}"}
        for i, s in enumerate(SENTENCES)
    ]
    (tmp / "in").mkdir()
    return [
        write(tmp / "in" / "tickets.jsonl", "".join(json.dumps(r) + "\n" for r in openai)),
        write(tmp / "in" / "cases.json", json.dumps(sharegpt)),
        write(tmp / "in" / "notes.json", json.dumps(alpaca)),
    ]


def readable(path: Path) -> str:
    """A file's text as a reader of it would get it: parquet decoded, JSON escapes undone."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False, default=str)
    text = data.decode("utf-8", "replace")
    if path.suffix in (".json", ".jsonl"):
        try:
            rows = (
                [json.loads(x) for x in text.splitlines() if x.strip()]
                if path.suffix == ".jsonl"
                else [json.loads(text)]
            )
            text += json.dumps(rows, ensure_ascii=False)
        except json.JSONDecodeError:
            pass
    return text


def trainer_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "peft", "transformers"))


def test_no_canary_and_no_key_in_anything_written(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("presidio_analyzer", reason="PII redaction needs presidio-analyzer")
    from tests.test_augment import Scripted

    store = tmp_path / "leak.duckdb"
    env = {"SIFT_LLM_API_KEY": KEY, "SIFT_RUNS": str(tmp_path / "runs"), "SIFT_ACTOR": "leak-test"}
    for k, v in env.items():  # for the steps run in this process too
        monkeypatch.setenv(k, v)
    logs: list[str] = []

    def sift(*args: str) -> dict[str, Any]:
        r = run_sift(*args, "--json", store=store, env=env)
        logs.extend([r.stdout, r.stderr])
        assert r.returncode == 0, (args, r.stderr[-3000:])
        return json.loads(r.stdout)

    files = canary_files(tmp_path)
    sift("import", *map(str, files))
    wb = workbench.open(store)
    if not hasattr(wb, "redact"):
        pytest.skip("the PII stage (sift redact) is not here yet")
    # Redaction in this process: it shares the analyzer other PII tests built (~20 s to build).
    # The default redaction changes only what it is sure of (e-mails, phones, cards, ...); names
    # and addresses wait for a reviewer, who accepts them here, and a second redaction applies them.
    r = wb.redact(actor="leak-test")
    assert r.conversations_redacted == 15, r
    assert r.pending_left, r
    wb.pii_bulk_review("accepted", min_score=0.0, actor="leak-test")
    wb.redact(actor="leak-test")
    assert not wb.store.pii_unresolved_conversations()

    srv = Scripted()
    try:
        out = sift(
            "augment", "--endpoint", srv.url, "--model", "scripted", "--n", "2", "--limit", "3", "--no-pii-check"
        )
        assert out["calls"] >= 1 and srv.auth and all(a == f"Bearer {KEY}" for a in srv.auth)  # the key was used
    finally:
        srv.stop()
    wb.accept([c["id"] for c in wb.list(limit=1000).conversations], actor="leak-test")
    wb.freeze("v1", eval_fraction=0.25, seed=3, actor="leak-test")
    sift("export", "v1", "--format", "openai", "--out", str(tmp_path / "export-openai"))
    for fmt in ("sharegpt", "alpaca", "parquet"):
        wb.export_version("v1", fmt, tmp_path / f"export-{fmt}")
    trained = False
    if trainer_available():
        write(tmp_path / "tiny.json", json.dumps(TINY_TRAIN))
        run = sift("train", "v1", "--config", str(tmp_path / "tiny.json"), "--wait")
        assert run["state"] == "succeeded", run
        trained = True

    # ---- scan everything written
    written = [p for p in tmp_path.rglob("*") if p.is_file() and tmp_path / "in" not in p.parents]
    store_files = {p for p in written if p.name.startswith(store.name)}
    key_hits = [str(p) for p in written if KEY.encode() in p.read_bytes() or KEY in readable(p)]
    key_hits += [f"log {i}" for i, text in enumerate(logs) if KEY in text]
    assert not key_hits, key_hits
    canary_hits = []
    for p in [p for p in written if p not in store_files]:
        text = readable(p)
        canary_hits += [f"{p.relative_to(tmp_path)}: {k}" for k, v in CANARIES.items() if v in text]
    canary_hits += [f"log {i}: {k}" for i, text in enumerate(logs) for k, v in CANARIES.items() if v in text]
    assert not canary_hits, canary_hits
    # The scan saw real output: exported conversations, and the run folder when there is a trainer.
    assert sum(1 for p in written if p.suffix in (".jsonl", ".parquet") and "export-" in str(p)) >= 8
    if trained:
        assert any(p.name == "train.log" for p in written) and any(p.suffix == ".safetensors" for p in written)
    record(
        "no PII canary or API key in anything written",
        files_scanned=len(written),
        bytes_scanned=sum(p.stat().st_size for p in written),
        command_outputs=len(logs),
        canaries=len(CANARIES),
        training_run=trained,
        canary_leaks=0,
        key_leaks=0,
    )
