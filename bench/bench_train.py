"""Training throughput on CUDA: Sift's trainer configurations against the transformers/trl and
unsloth anchors, side by side in one run, same data, batch and LoRA settings.

SmolLM2-135M-Instruct, 4-bit nf4 base (unless a configuration says otherwise), LoRA r16/α32 on all
linear layers, batch 8, max_seq_len 1024, 2,000 ticket conversations (the noisy pool: 150–9,035
tokens, median 244, 20 cut at 1,024), assistant-only loss. Each configuration is one
`python -m trainer` process; throughput counts the non-padding tokens the model saw over steps
11..N (warm-up excluded), peak memory is torch.cuda.max_memory_allocated during training.

    python bench/bench_train.py            # needs CUDA; prints the markdown table
    SIFT_BENCH_STEPS=60 SIFT_BENCH_CONFIGS=hf,hf-packing python bench/bench_train.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMMON: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "max_seq_len": 1024,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,  # unsloth's fast path needs 0; the same for every configuration
    "learning_rate": 2e-4,
    "warmup_ratio": 0.1,
    "logging_steps": 1,
    "evaluate": False,
    "seed": 42,
}

# name → (what it is, config changes). The first four are the anchors of the table.
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "hf": ("transformers + peft + bnb + trl SFTTrainer (SDPA)", {"backend": "hf"}),
    "unsloth": ("unsloth (padding-free on by itself)", {"backend": "unsloth"}),
    "hf-packing": ("transformers baseline with trl packing (bfd)", {"backend": "hf", "packing": True}),
    "unsloth-packing": ("unsloth with packing", {"backend": "unsloth", "packing": True}),
    "sift-packed-nockpt": (
        "Sift: hf 4-bit, packing (bfd, padding-free), no gradient checkpointing",
        {"backend": "hf", "packing": True, "gradient_checkpointing": False},
    ),
    "sift-bf16-packed": (
        "Sift: hf bf16 base (no 4-bit), packing, no gradient checkpointing",
        {"backend": "hf", "packing": True, "load_in_4bit": False, "gradient_checkpointing": False},
    ),
}
ANCHORS = ("hf", "unsloth", "hf-packing", "unsloth-packing")
PEAK_BF16_TFLOPS = 989.0  # H100 SXM dense bf16 datasheet; the device measured ~798 on a large GEMM


def bench_export(out: Path, n: int = 2000, seed: int = 7) -> Path:
    from curation.formats import map_openai
    from curation.tickets import generate_noisy
    from trainer.manifest import write_export

    rows, _ = generate_noisy(n, seed=seed)
    convs = [map_openai(r)[0] for r in rows]
    return write_export(out, convs, convs[:8], version="bench-2000")


def model_flops_per_token(model_config: dict[str, Any], seq: float) -> float:
    """LoRA training ≈ 4·N per token (forward 2N, backward through activations 2N; no frozen-weight
    gradients) plus attention (4·layers·seq·hidden forward, twice that backward)."""
    h = model_config["hidden_size"]
    layers = model_config["num_hidden_layers"]
    inter = model_config["intermediate_size"]
    heads = model_config["num_attention_heads"]
    kv = model_config.get("num_key_value_heads", heads) * (h // heads)
    n = layers * (2 * h * h + 2 * h * kv + 3 * h * inter) + model_config["vocab_size"] * h
    attn = 3 * 4 * layers * seq * h / 2  # causal: half the pairs
    return 4 * n + attn


def run_config(
    name: str, export: Path, work: Path, steps: int, base_model: str, extra: dict[str, Any]
) -> dict[str, Any]:
    desc, changes = CONFIGS[name]
    cfg = {**COMMON, **changes, **extra, "max_steps": steps, "base_model": base_model}
    run = work / name
    (work / f"{name}.json").write_text(json.dumps(cfg))
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "--manifest",
            str(export),
            "--config",
            str(work / f"{name}.json"),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=float(os.environ.get("SIFT_BENCH_TIMEOUT", "300")),
    )
    wall = time.monotonic() - t0
    status = json.loads((run / "status.json").read_text()) if (run / "status.json").exists() else {}
    out: dict[str, Any] = {"name": name, "what": desc, "state": status.get("state"), "wall_s": round(wall, 1)}
    if status.get("state") != "succeeded":
        out["error"] = status.get("error") or (r.stdout + r.stderr)[-1500:]
        return out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [x for x in rows if "loss" in x]
    by_step = {x["step"]: x for x in rows}
    lo, hi = 10, steps
    if lo not in by_step or hi not in by_step:
        out["error"] = f"missing steps in metrics ({sorted(by_step)[:3]}…)"
        return out
    tokens = by_step[hi]["tokens"] - by_step[lo]["tokens"]
    seconds = by_step[hi]["ts"] - by_step[lo]["ts"]
    out.update(
        tokens_per_s=round(tokens / seconds, 1),
        s_per_step=round(seconds / (hi - lo), 4),
        tokens_per_step=round(tokens / (hi - lo), 1),
        peak_mem_gib=status["summary"].get("peak_mem_gib"),
        loss_last10=round(sum(by_step[s]["loss"] for s in range(hi - 9, hi + 1)) / 10, 4),
        loss_at_end=by_step[hi]["loss"],
    )
    prof = run / "profile.txt"
    if prof.exists():
        out["profile"] = prof.read_text()[:20000]
    return out


def main() -> dict[str, Any]:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        print("bench_train: needs CUDA (run it on the device machine: scripts/gpu_run.sh full)")
        return {"skipped": "needs CUDA"}
    from curation.models import resolve_model

    steps = int(os.environ.get("SIFT_BENCH_STEPS", "60"))
    names = [n for n in os.environ.get("SIFT_BENCH_CONFIGS", ",".join(CONFIGS)).split(",") if n]
    profile = set(os.environ.get("SIFT_BENCH_PROFILE", "hf-packing").split(","))
    base_model = resolve_model(os.environ.get("SIFT_BENCH_MODEL"))
    model_config = json.loads((Path(base_model) / "config.json").read_text())
    out_dir = Path(os.environ.get("SIFT_BENCH_OUT") or tempfile.mkdtemp(prefix="bench-train-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-train-runs-"))
    export = bench_export(work / "export").parent
    # Useful attention FLOPs depend on each conversation's own length, not the packed row's.
    from curation.models import load_tokenizer
    from trainer.data import render_all
    from trainer.manifest import load_export

    rendered, _ = render_all(load_tokenizer(base_model), load_export(export).train, COMMON["max_seq_len"])
    mean_len = sum(len(e.input_ids) for e in rendered) / len(rendered)
    results = []
    for name in names:
        extra = {"profile_steps": 3} if name in profile else {}
        res = run_config(name, export, work, steps, base_model, extra)
        results.append(res)
        (out_dir / "bench_train.json").write_text(json.dumps(results, indent=2))
        print(json.dumps({k: v for k, v in res.items() if k != "profile"}), flush=True)
    ok = [r for r in results if r.get("tokens_per_s")]
    anchors = [r for r in ok if r["name"] in ANCHORS]
    best_anchor = max(anchors, key=lambda r: r["tokens_per_s"]) if anchors else None
    dev = torch.cuda.get_device_name(0)
    print(f"\n### Training throughput ({dev}, {Path(base_model).name}, steps 11–{steps}, batch 8, max_seq_len 1024)\n")
    print(
        "| configuration | non-padding tokens/s | vs best anchor | s/step | tokens/step | peak allocated GiB | loss (mean of last 10 steps) | MFU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if not r.get("tokens_per_s"):
            print(f"| {r['what']} | failed: {str(r.get('error'))[:120]} | | | | | | |")
            continue
        ratio = f"{r['tokens_per_s'] / best_anchor['tokens_per_s']:.2f}×" if best_anchor else "-"
        fpt = model_flops_per_token(model_config, mean_len)
        mfu = r["tokens_per_s"] * fpt / (PEAK_BF16_TFLOPS * 1e12)
        print(
            f"| {r['what']} | {r['tokens_per_s']:,.0f} | {ratio} | {r['s_per_step']:.3f} | {r['tokens_per_step']:,.0f} | "
            f"{r['peak_mem_gib']} | {r['loss_last10']} | {mfu:.2%} |"
        )
    return {"device": dev, "steps": steps, "mean_len": mean_len, "results": results}


if __name__ == "__main__":
    main()
