"""Helpers shared by the multi-process trainer tests (test_trainer_ddp*.py, test_trainer_fsdp.py):
the tiny configuration, an export of a few ticket conversations, `sift train` in the background,
and a clean-up that leaves no rank running."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.conftest import run_sift
from tests.test_trainer_cpu import TINY, tickets
from trainer.manifest import write_export
from workbench import jobs

STEPS = 3
# The tiny configuration with deterministic settings (no dropout: TINY has lora_dropout 0; fp32 on
# the CPU) and minimal evaluation: the eval loss, and one answer of 8 tokens from the tuned model.
COMMON = {
    **TINY,
    "max_steps": STEPS,
    "gradient_accumulation_steps": 1,
    "max_new_tokens": 8,
    "eval_limit": 1,
    "generate_base": False,
    # One row per conversation, as before packing became the default: the same rows split over the
    # ranks as in the one-process batch, so per-step losses can be compared row for row.
    "packing": False,
}
# Float32 sums in another order (per-rank halves, then the all-reduce): equal to ~1e-6 measured.
TOL = 1e-4


def make_export(tmp: Path) -> Path:
    """6 train conversations (the global batch of 2 divides them: accelerate would otherwise pad a
    rank's last batch with repeats) and 2 eval ones."""
    convs = tickets(8)
    write_export(tmp / "export-v1", convs[:6], convs[6:], version="v1")
    return tmp / "export-v1"


def env_for(tmp: Path) -> dict[str, str]:
    # One thread per process, as the launcher gives each rank on 2 cores: comparable, and spared
    # the spin-waiting of 2 threads on a busy 2-core machine.
    return {"SIFT_RUNS": str(tmp / "runs"), "OMP_NUM_THREADS": "1"}


def train(tmp: Path, config: dict, name: str, store: Path, *extra: str) -> dict:
    """`sift train` of the export with `config` (written as NAME.json); returns its JSON answer."""
    (tmp / f"{name}.json").write_text(json.dumps(config))
    r = run_sift(
        "train",
        str(tmp / "export-v1"),
        "--config",
        str(tmp / f"{name}.json"),
        *extra,
        "--json",
        store=store,
        env=env_for(tmp),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def kill_leftovers(runs: Path) -> None:
    """A run left going by a failed test must not outlive the tests (each rank has its own session)."""
    for status in runs.glob("*/status.json"):
        s = json.loads(status.read_text())
        for pid in [*(s.get("pids") or []), s.get("pid"), s.get("launcher_pid")]:
            if pid and jobs.pid_alive(pid):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
