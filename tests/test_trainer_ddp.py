"""Several processes through `accelerate launch`, on the CPU (gloo): a 2-process DDP run of the tiny
configuration learns exactly what one process learns from the same global batch, rank 0 alone
writes the run folder and evaluates, and what cannot run is refused (cancel:
test_trainer_ddp_cancel.py; FSDP: test_trainer_fsdp.py).

Deterministic by construction: same seed (LoRA init, data order), no dropout, fp32, and a train
split that the global batch divides."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_sift
from tests.multiprocess_runs import COMMON, STEPS, TOL, env_for, kill_leftovers, make_export, rows, train
from tests.test_trainer_cpu import tickets
from trainer.config import ConfigError, TrainConfig
from trainer.distributed import LaunchError, accelerate_config, plan, ranks_from_env
from trainer.manifest import write_export
from workbench import jobs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The same tiny training twice: one process with batch 2, two processes with batch 1 each."""
    tmp = tmp_path_factory.mktemp("ddp")
    make_export(tmp)
    store = tmp / "sift.duckdb"
    out: dict = {"store": store, "env": env_for(tmp), "tmp": tmp}
    t0 = time.monotonic()
    try:
        # Both at once: their start-ups (imports, model load) are single-threaded and overlap.
        out["one"] = train(tmp, {**COMMON, "per_device_train_batch_size": 2}, "one", store)
        out["two"] = train(
            tmp, {**COMMON, "per_device_train_batch_size": 1}, "two", store, "--cpu-processes", "2", "--wait"
        )
        out["one"]["state"] = jobs.wait(Path(out["one"]["out_dir"]), poll_s=0.5, timeout_s=300)["state"]
        out["seconds"] = round(time.monotonic() - t0, 1)
        yield out
    finally:
        kill_leftovers(tmp / "runs")
        if os.environ.get("SIFT_TEST_TIMINGS"):
            print(f"1-process and 2-process runs (at once): {out.get('seconds')} s")


def test_two_processes_learn_what_one_process_learns(runs: dict) -> None:
    one, two = Path(runs["one"]["out_dir"]), Path(runs["two"]["out_dir"])
    assert runs["one"]["state"] == runs["two"]["state"] == "succeeded"
    a, b = rows(one), rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, STEPS + 1))
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=TOL), (a, b)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=TOL), (a, b)
        assert y["tokens"] == x["tokens"]  # counted over both ranks
    assert a[-1]["loss"] < a[0]["loss"]  # and it learns something
    # Evaluation is rank 0's alone, on the same trained weights: the same eval loss.
    ea, eb = (json.loads((d / "eval.json").read_text()) for d in (one, two))
    assert eb["eval_loss"] == pytest.approx(ea["eval_loss"], rel=TOL)
    assert eb["n_generated"] == ea["n_generated"] == 1
    assert eb["train"]["processes"] == 2 and eb["train"]["strategy"] == "ddp"
    assert ea["train"]["processes"] == 1 and ea["train"]["strategy"] is None


def test_rank_zero_alone_writes_the_run_folder(runs: dict) -> None:
    run_dir = Path(runs["two"]["out_dir"])
    names = {p.name for p in run_dir.iterdir()}
    assert names >= {"status.json", "config.json", "metrics.jsonl", "train.log", "eval.json", "samples.jsonl"}
    assert {"accelerate.yaml", "process.log", "adapter"} <= names
    assert not list(run_dir.glob(".*.tmp"))
    assert len(rows(run_dir)) == STEPS  # one writer: no line twice
    assert "[rank 1]" not in (run_dir / "train.log").read_text()
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert not (run_dir / "adapter" / "training_args.bin").exists()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["world_size"] == 2 and len(status["pids"]) == 2 and status["process_backend"] == "gloo"
    assert status["pid"] == status["pids"][0] and status["step"] == status["total"] == STEPS
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["processes"] == {"world_size": 2, "strategy": "ddp"}
    assert saved["config"]["num_processes"] == 2 and saved["config"]["device"] == "cpu"
    yaml_text = (run_dir / "accelerate.yaml").read_text()
    assert "distributed_type: MULTI_GPU" in yaml_text and "num_processes: 2" in yaml_text
    log = (run_dir / "process.log").read_text()
    assert "ChildFailedError" not in log and "terminate called" not in log, log[-3000:]
    # The run reads back like any other.
    listed = json.loads(run_sift("runs", "--json", store=runs["store"], env=runs["env"], check=True).stdout)["runs"]
    got = {r["run_id"]: r for r in listed}[runs["two"]["run_id"]]
    assert got["state"] == "succeeded" and got["metrics"]["eval_loss"] > 0


# ---------------------------------------------------------------- what is refused (no training)


def test_plans_and_refusals() -> None:
    cfg = TrainConfig.from_dict
    assert plan(cfg({"num_processes": 2}), cuda_devices=0).device == "cpu"  # auto: CPU processes
    assert plan(cfg({"num_processes": 2, "device": "cuda"}), cuda_devices=4).device == "cuda"
    assert plan(cfg({}), cuda_devices=0).distributed is False
    with pytest.raises(
        LaunchError,
        match=r"^training on 2 GPUs \(--gpus 2\) needs 2 CUDA GPUs, and this machine has none; "
        r"--cpu-processes 2 runs 2 CPU processes over gloo instead$",
    ):
        plan(cfg({"num_processes": 2, "device": "cuda"}), cuda_devices=0)
    with pytest.raises(
        LaunchError, match=r"^training on 4 GPUs \(--gpus 4\) needs 4 CUDA GPUs, and this machine has 2$"
    ):
        plan(cfg({"num_processes": 4}), cuda_devices=2)
    with pytest.raises(
        LaunchError,
        match=r"^strategy 'deepspeed-zero3' needs DeepSpeed, which is not installed: pip install deepspeed "
        r"\(or use --strategy ddp or fsdp, which need nothing more\)$",
    ):
        plan(cfg({"num_processes": 2, "strategy": "deepspeed-zero3"}), cuda_devices=2, has_deepspeed=False)
    with pytest.raises(
        ConfigError, match=r"^strategy 'deepspeed-zero2' runs on CUDA GPUs only; CPU processes train with ddp or fsdp$"
    ):
        cfg({"num_processes": 2, "strategy": "deepspeed-zero2", "device": "cpu"})
    with pytest.raises(
        ConfigError,
        match=r"^the unsloth backend trains in one process on one GPU only; for several GPUs use backend 'hf' "
        r"\(QLoRA under ddp, LoRA under fsdp\)$",
    ):
        cfg({"num_processes": 2, "backend": "unsloth"})
    with pytest.raises(ConfigError, match=r"^config field 'strategy' must be one of ddp, fsdp, deepspeed-zero2, "):
        cfg({"strategy": "zero"})


def test_accelerate_configs_and_ranks() -> None:
    p = plan(TrainConfig.from_dict({"num_processes": 4, "strategy": "fsdp"}), cuda_devices=4)
    c = accelerate_config(p, TrainConfig(), port=29555)
    assert c["distributed_type"] == "FSDP" and c["num_processes"] == 4 and c["main_process_port"] == 29555
    assert c["fsdp_config"]["fsdp_version"] == 2 and c["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    cfg = TrainConfig.from_dict({"num_processes": 2, "strategy": "deepspeed-zero2", "gradient_accumulation_steps": 8})
    c = accelerate_config(plan(cfg, cuda_devices=2, has_deepspeed=True), cfg, port=1)
    assert c["distributed_type"] == "DEEPSPEED"
    assert c["deepspeed_config"]["zero_stage"] == 2 and c["deepspeed_config"]["gradient_accumulation_steps"] == 8
    r = ranks_from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"})
    assert (r.rank, r.world_size, r.strategy, r.is_main, r.sharded) == (1, 2, "fsdp", False, True)
    assert ranks_from_env({}).distributed is False


def test_cli_refuses_in_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without CUDA")
    write_export(tmp_path / "export", tickets(3)[:2], tickets(3)[2:], version="v")
    env = {"SIFT_RUNS": str(tmp_path / "runs")}
    r = run_sift("train", str(tmp_path / "export"), "--gpus", "2", store=tmp_path / "s.duckdb", env=env)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: training on 2 GPUs (--gpus 2) needs 2 CUDA GPUs, and this machine has none; "
        "--cpu-processes 2 runs 2 CPU processes over gloo instead"
    ]
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    r = run_sift("train", str(tmp_path / "export"), "--gpus", "2", "--cpu-processes", "2", store=tmp_path / "s.duckdb")
    assert r.returncode == 2 and "argument --cpu-processes: not allowed with argument --gpus" in r.stderr
