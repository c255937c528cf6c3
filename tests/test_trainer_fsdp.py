"""FSDP (FSDP2 through `accelerate launch`) in 2 CPU processes over gloo: the sharded run learns
what one process learns from the same global batch, rank 0 saves the adapter gathered from the
shards, and evaluates a fresh copy of the base with that adapter (no rank holds the whole trained
model), giving the same eval loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.multiprocess_runs import COMMON, STEPS, TOL, kill_leftovers, make_export, rows, train
from workbench import jobs

# Beyond what CI needs (the DDP loss-match test runs there): `make test-all` runs it.
pytestmark = pytest.mark.slow


def test_fsdp_two_processes_learn_what_one_process_learns(tmp_path: Path) -> None:
    make_export(tmp_path)
    store = tmp_path / "sift.duckdb"
    try:
        one = train(tmp_path, {**COMMON, "per_device_train_batch_size": 2}, "one", store)
        two = train(
            tmp_path,
            {**COMMON, "per_device_train_batch_size": 1},
            "two",
            store,
            "--cpu-processes",
            "2",
            "--strategy",
            "fsdp",
            "--wait",
        )
        assert jobs.wait(Path(one["out_dir"]), poll_s=0.5, timeout_s=300)["state"] == "succeeded"
    finally:
        kill_leftovers(tmp_path / "runs")
    assert two["state"] == "succeeded"
    a, b = rows(Path(one["out_dir"])), rows(Path(two["out_dir"]))
    assert len(a) == len(b) == STEPS
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=TOL), (a, b)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=TOL), (a, b)
    run_dir = Path(two["out_dir"])
    ea, eb = (json.loads((Path(r["out_dir"]) / "eval.json").read_text()) for r in (one, two))
    assert eb["eval_loss"] == pytest.approx(ea["eval_loss"], rel=TOL)
    assert eb["train"]["strategy"] == "fsdp" and eb["n_generated"] == 1
    assert "distributed_type: FSDP" in (run_dir / "accelerate.yaml").read_text()
    assert "evaluating a fresh copy of the base with the saved adapter" in (run_dir / "train.log").read_text()
    # The adapter holds the LoRA weights only (gathered whole), like a one-process adapter.
    from safetensors import safe_open

    with (
        safe_open(str(run_dir / "adapter" / "adapter_model.safetensors"), "pt") as f2,
        safe_open(str(Path(one["out_dir"]) / "adapter" / "adapter_model.safetensors"), "pt") as f1,
    ):
        assert sorted(f2.keys()) == sorted(f1.keys())
        k = sorted(f1.keys())[0]
        assert tuple(f2.get_tensor(k).shape) == tuple(f1.get_tensor(k).shape)
