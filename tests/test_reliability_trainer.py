"""Trainer faults (issue 10): a real trainer process that crashes on its config, one that runs out
of memory, and one that is cancelled each end as a failed or cancelled run whose log tail is kept
in the store, while the app goes on serving the same store.

No CPU machine here can be made to run out of memory safely, so the out-of-memory run gets a
small address-space limit (RLIMIT_AS, set on the running trainer with prlimit) that its model
cannot be loaded under: the allocation fails exactly as it does when memory runs out.
"""

from __future__ import annotations

import importlib.util
import json
import resource
import time
from pathlib import Path
from typing import Any

import pytest

import workbench
from tests.conftest import run_sift, write
from tests.reliability_app import Load, serve
from tests.reliability_figures import record
from trainer.rundir import HINTS

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "peft", "transformers", "trl")),
    reason="the trainer's libraries (torch, peft, transformers, trl) are not installed",
)

TINY = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "max_seq_len": 128,
    "lora_r": 4,
    "lora_alpha": 8,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "evaluate": False,
}
FINAL = ("succeeded", "failed", "cancelled")


def test_crash_oom_and_cancel_leave_runs_with_their_log_tail(tmp_path: Path) -> None:
    from tests.test_trainer_cpu import tickets
    from trainer.manifest import write_export

    convs = tickets(6)
    export = tmp_path / "export-v1"
    write_export(export, convs[:4], convs[4:], version="v1")
    store = tmp_path / "runs.duckdb"
    workbench.open(store).stats()  # create it
    env = {"SIFT_RUNS": str(tmp_path / "runs")}
    configs = {
        # Every conversation is longer than 8 tokens: the trainer starts, loads the model, and fails.
        "crash": {**TINY, "max_seq_len": 8},
        "oom": TINY,
        "cancel": {**TINY, "max_steps": 400},
    }

    def sift(*args: str) -> Any:
        r = run_sift(*args, "--json", store=store, env=env)
        assert r.returncode == 0, (args, r.stderr[-3000:])
        return json.loads(r.stdout)

    with serve(store, tmp_path, env=env) as app, Load(app, users=1) as load:
        runs: dict[str, str] = {}
        for name, cfg in configs.items():
            write(tmp_path / f"{name}.json", json.dumps(cfg))
            runs[name] = sift("train", str(export), "--config", str(tmp_path / f"{name}.json"))["run_id"]
            if name == "oom":
                pid = workbench.open(store).store.get_run(runs[name])["pid"]
                # The trainer's libraries take ~950 MB of address space; the model maps 540 MB more.
                limit = 1400 << 20
                resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        run_dir = {n: tmp_path / "runs" / rid for n, rid in runs.items()}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # cancel once the trainer is up
            if (json.loads((run_dir["cancel"] / "status.json").read_text()).get("state")) == "running":
                break
            time.sleep(0.3)
        assert sift("cancel", runs["cancel"])["cancel_requested"] is True
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {r["run_id"]: r["state"] for r in sift("runs")["runs"]}
            if all(states[rid] in FINAL for rid in runs.values()):
                break
            time.sleep(1)
        assert {n: states[rid] for n, rid in runs.items()} == {
            "crash": "failed",
            "oom": "failed",
            "cancel": "cancelled",
        }
        time.sleep(1.5)
        page = app.load("train")
        assert app.healthy() and page["finished"] and not page["exceptions"], page

    wb = workbench.open(store)
    got = {n: wb.store.get_run(rid) for n, rid in runs.items()}
    crash, oom, cancel = got["crash"], got["oom"], got["cancel"]
    assert crash["error"].startswith("ValueError: no train conversation has an assistant turn"), crash["error"]
    assert crash["hint"] == "see train.log" and "no train conversation" in crash["log_tail"]
    assert "Cannot allocate memory" in oom["error"] and oom["hint"] == HINTS["oom"], (oom["error"], oom["hint"])
    assert "Cannot allocate memory" in oom["log_tail"]
    assert cancel["log_tail"] and "signal 15" in cancel["log_tail"], cancel["log_tail"]
    assert cancel["step"] is None or cancel["step"] < 400
    # The app served the whole time: every page load finished, none raised.
    assert load.sessions and all(s["finished"] and not s["exceptions"] for s in load.sessions), load.errors[:3]
    assert not load.errors, load.errors[:3]
    record("trainer faults", runs=3, ended_with_log_tail=3, page_loads=len(load.sessions), page_exceptions=0)


def test_cpu_out_of_memory_errors_get_the_memory_hint() -> None:
    from trainer.rundir import classify_error

    mmap = "unable to mmap 538090408 bytes from file <model.safetensors>: Cannot allocate memory (12)"
    alloc = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes. Error code 12"
    assert classify_error(RuntimeError(mmap)) == classify_error(RuntimeError(alloc)) == "oom"
    assert classify_error(MemoryError()) == "oom"
