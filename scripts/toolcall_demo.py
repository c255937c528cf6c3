"""Function calling end to end on CPU: glaive tool-call rows are imported, validated with a
tool-capable template, frozen, fine-tuned (tiny LoRA on the embedded SmolLM2) and evaluated
with tool-call metrics, shown by `sift compare`.

The embedded SmolLM2's own template cannot render tool calls, so the model folder used here is
the embedded model with trl's public Qwen2.5 template (tools, `<tool_call>` blocks, tool results)
put over its vocabulary; nothing is downloaded.

    .venv/bin/python scripts/toolcall_demo.py [--work DIR] [--rows 120] [--steps 60]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"


def tool_model(target: Path) -> Path:
    """The embedded model with trl's Qwen2.5 chat template (weights linked, not copied)."""
    from curation.models import load_tokenizer, resolve_model

    if (target / "tokenizer_config.json").exists():
        return target
    src = Path(resolve_model(None))
    spec = importlib.util.find_spec("trl")
    assert spec and spec.submodule_search_locations, "trl is not installed"
    template = (Path(spec.submodule_search_locations[0]) / "chat_templates" / "qwen2_5.jinja").read_text()
    target.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(str(src))
    tok.chat_template = template
    tok.save_pretrained(target)
    for f in src.iterdir():
        if f.suffix in (".safetensors", ".json") and not (target / f.name).exists() and "token" not in f.name:
            (target / f.name).symlink_to(f.resolve())
    return target


def sift(store: Path, *args: str, env: dict[str, str]) -> dict:
    cmd = [sys.executable, "-m", "workbench", "--store", str(store), *args, "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/sift-toolcall-demo")
    p.add_argument("--rows", type=int, default=120, help="shortest tool-calling glaive rows to use")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--eval-limit", type=int, default=8)
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from curation.formats import parse_file, to_openai

    model = tool_model(work / "smollm2-qwen25-tools")
    convs = [m.conversation for m in parse_file(CORPORA / "LLaMA-Factory" / "glaive_toolcall_en_demo.json").mapped]
    calling = [c for c in convs if c.tools and any(m.tool_calls for m in c.messages)]
    picked = sorted(calling, key=lambda c: (len(c.content_json()), c.id))[: a.rows]
    subset = work / "glaive_toolcalls.jsonl"
    subset.write_text("".join(json.dumps(to_openai(c), ensure_ascii=False) + "\n" for c in picked))
    store = work / "sift.duckdb"
    # One torch thread: on a busy 2-core machine two threads spin-wait on each other.
    env = {"SIFT_RUNS": str(work / "runs"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if store.exists():
        store.unlink()
    t0 = time.monotonic()
    imported = sift(store, "import", str(subset), env=env)
    checked = sift(store, "validate", "--model", str(model), "--max-seq-len", "1024", env=env)
    print(
        f"validated with {model.name}: {checked['checked']} checked, {checked['passed']} passed, "
        f"flagged {checked['flagged']}, warnings {checked['warnings']}",
        flush=True,
    )
    sift(store, "dedup", env=env)  # near-copies land in one family, so eval does not duplicate train
    frozen = sift(store, "freeze", "tools-v1", "--include", "not-rejected", "--eval-fraction", "0.12", env=env)
    print(
        f"imported {imported['totals']}; frozen {frozen.get('version')}: {frozen.get('train')} train, {frozen.get('eval')} eval",
        flush=True,
    )
    tiny = {
        "max_steps": a.steps,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_seq_len": a.max_seq_len,
        "learning_rate": a.lr,
        "warmup_ratio": 0.0,
        "lr_scheduler_type": "constant",
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "gradient_checkpointing": False,
        "logging_steps": 10,
        "max_new_tokens": 40,
        "eval_batch_size": 4,
        "eval_loss_limit": 4,
    }
    (work / "tiny.json").write_text(json.dumps(tiny))
    trained = sift(
        store,
        "train",
        "tools-v1",
        "--config",
        str(work / "tiny.json"),
        "--base-model",
        str(model),
        "--eval-limit",
        str(a.eval_limit),
        "--wait",
        env=env,
    )
    run_id = trained.get("run_id") or trained["run"]["run_id"]
    compared = sift(store, "compare", run_id, env=env)
    tc = compared["runs"][0]["metrics"].get("tool_calls")
    print(json.dumps({"run": run_id, "tool_calls": tc, "seconds": round(time.monotonic() - t0)}, indent=1))
    r = subprocess.run(
        [sys.executable, "-m", "workbench", "--store", str(store), "compare", run_id],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    print(r.stdout)


if __name__ == "__main__":
    main()
