"""Both backends end to end on CUDA (QLoRA: 4-bit nf4 base), on ticket conversations of the sample
task. CI skips these (`gpu` marker); scripts/gpu_run.sh runs them on the device machine.

SIFT_GPU_MODEL picks the base model (default: the embedded SmolLM2-135M-Instruct);
SIFT_GPU_OUT, when set, receives each run's status.json and eval.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tickets import generate_conversations

from curation.formats import map_openai
from tests.conftest import ROOT
from trainer.manifest import write_export

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _cuda():
        pytest.skip("needs CUDA")
    convs = [map_openai(r)[0] for r in generate_conversations(340, seed=5)]
    out = tmp_path_factory.mktemp("gpu") / "export"
    write_export(out, convs[:320], convs[320:], version="tickets-gpu")
    return out


@pytest.mark.parametrize("backend", ["hf", "unsloth"])
def test_backend_trains_a_version_end_to_end(export: Path, backend: str, tmp_path: Path) -> None:
    steps = int(os.environ.get("SIFT_GPU_STEPS", "30"))
    cfg = {
        "backend": backend,
        "base_model": os.environ.get("SIFT_GPU_MODEL", "smollm2-135m-instruct"),
        "max_steps": steps,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 1,
        "max_seq_len": 1024,
        "logging_steps": 5,
        "eval_limit": 20,
        "eval_batch_size": 20,
        "max_new_tokens": 96,
        "learning_rate": 5e-4,
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    run = tmp_path / f"run-{backend}"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "--manifest",
            str(export),
            "--config",
            str(tmp_path / "cfg.json"),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=420,
    )
    out = os.environ.get("SIFT_GPU_OUT")
    if out:
        for name in ("status.json", "eval.json", "train.log", "metrics.jsonl"):
            if (run / name).exists():
                shutil.copy(run / name, Path(out) / f"e2e-{backend}-{name}")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "succeeded" and status["backend"] == backend and status["device"] == "cuda"
    assert status["summary"]["dtype"] == "4bit-bfloat16" and status["summary"]["steps"] == steps
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses[-1] < losses[0]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["tuned"]["eval_loss"] < ev["base"]["eval_loss"]
    assert ev["n_generated"] == 20 and {"json_valid", "json_field_accuracy", "rouge_l"} <= set(ev["tuned"])
    assert (run / "adapter" / "adapter_config.json").exists()
