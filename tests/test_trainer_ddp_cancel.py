"""Cancelling a 2-process run (CPU, gloo) through `sift cancel`: every rank stops after the same
step, rank 0 keeps the adapter saved so far and reports `cancelled`, and the ranks and the launcher
all end by themselves (none killed by torch's launcher)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run_sift
from tests.multiprocess_runs import COMMON, env_for, kill_leftovers, make_export, train
from workbench import jobs

# Beyond what CI needs (the DDP loss-match test runs there): `make test-all` runs it.
pytestmark = pytest.mark.slow


def test_cancel_stops_every_rank_and_keeps_the_adapter(tmp_path: Path) -> None:
    make_export(tmp_path)
    try:
        _cancel_and_check(tmp_path, tmp_path / "sift.duckdb", env_for(tmp_path))
    finally:
        kill_leftovers(tmp_path / "runs")


def _cancel_and_check(tmp: Path, store: Path, env: dict[str, str]) -> None:
    long = {**COMMON, "per_device_train_batch_size": 1, "max_steps": 400, "save_steps": 1}
    started = train(tmp, long, "long", store, "--cpu-processes", "2")
    assert started["state"] == "queued"
    run_dir = Path(started["out_dir"])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        s = json.loads((run_dir / "status.json").read_text())
        if (s.get("step") or 0) >= 1 and (run_dir / "adapter" / "adapter_config.json").exists():
            break
        assert s["state"] in ("queued", "running"), s
        time.sleep(0.5)
    processes = [*s["pids"], s["launcher_pid"]]
    assert len(processes) == 3 and all(jobs.pid_alive(p) for p in processes)
    c = json.loads(run_sift("cancel", started["run_id"], "--json", store=store, env=env, check=True).stdout)
    assert c["cancel_requested"] is True
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(jobs.pid_alive(p) for p in processes):
        time.sleep(0.5)
    assert not any(jobs.pid_alive(p) for p in processes)  # both ranks and the launcher are gone
    listed = json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]
    assert {r["run_id"]: r for r in listed}[started["run_id"]]["state"] == "cancelled"
    s = json.loads((run_dir / "status.json").read_text())
    assert s["state"] == "cancelled" and s["step"] < 400
    assert s["message"] == f"cancelled at step {s['step']}; adapter kept"
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists() and not (run_dir / "eval.json").exists()
    log = (run_dir / "process.log").read_text()
    assert "ChildFailedError" not in log and "terminate called" not in log, log[-3000:]
