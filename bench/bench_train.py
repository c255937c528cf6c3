"""Training throughput at the sizes people train: Sift's default trainer configuration against
unsloth, trl (packing + gradient checkpointing) and trl with liger-kernel, side by side in one run.

Random-initialised models built from configs on the GPU (throughput and memory do not depend on
the weights' values): a Llama-3.2-1B shape, a Llama-3-8B shape (vocabulary 128,256) and a Gemma-3-1B
shape (vocabulary 262,144), each saved once in bf16 and loaded by every configuration in 4 bits
(nf4, double quantization, bf16 compute). QLoRA r16/α32, dropout 0 (unsloth's fast path needs 0;
the same for every configuration) on all linear layers; batch 4 × max_seq_len 2048, no gradient
accumulation; assistant-only loss on 2,000 ticket conversations (`generate_noisy(2000, seed=7)`)
rendered with SmolLM2's tokenizer and chat template (its ids are valid in the larger vocabularies).
Same data, order, LoRA init and seed for every configuration; each configuration is its own
`python -m trainer` process. Throughput counts the non-padding tokens the model saw over steps
LO+1..STEPS (warm-up, compilation and the profiled steps excluded); peak memory is
torch.cuda.max_memory_allocated() during training; MFU counts useful FLOPs (4·N per token for LoRA
over a frozen base, plus causal attention over each conversation's own length) against the bf16
matrix rate measured on the same GPU in the same run.

    python bench/bench_train.py           # needs CUDA; prints one markdown table per shape
    SIFT_BENCH_SHAPES=llama-1b SIFT_BENCH_CONFIGS=trl,sift-default python bench/bench_train.py

Environment: SIFT_BENCH_SHAPES, SIFT_BENCH_CONFIGS, SIFT_BENCH_STEPS (20), SIFT_BENCH_LO (8),
SIFT_BENCH_TOKENIZER (a folder with tokenizer.json; default: the embedded SmolLM2's),
SIFT_BENCH_MODELS (where the random models are saved), SIFT_BENCH_OUT (results),
SIFT_BENCH_PROFILE (configurations to profile, `shape:name,...`), SIFT_BENCH_TIMEOUT (s per run).
SIFT_BENCH_SHAPES also takes gemma3-4b and gemma3-27b (not in the default set; the 27B is 54 GB of bf16
weights to write and load per configuration); SIFT_BENCH_CONFIGS takes `shape:name` for a configuration at one shape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "datasets"))  # the sample generator, imported as `tickets`

# The architectures' public config.json values that set the cost (sizes, heads, vocabulary).
SHAPES: dict[str, dict[str, Any]] = {
    "llama-1b": {
        "model_type": "llama",
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 8192,
    },
    "gemma3-1b": {
        "model_type": "gemma3_text",
        "hidden_size": 1152,
        "intermediate_size": 6912,
        "num_hidden_layers": 26,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "vocab_size": 262144,
        "sliding_window": 512,
        "query_pre_attn_scalar": 256,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "max_position_embeddings": 32768,
    },
    # Gemma 3 4B's text model: a Gemma size in the seeds' range (E2B-27B) whose MLP products are over FP8's
    # 8M-element floor (none of the 1B's are); not in the default set.
    "gemma3-4b": {
        "model_type": "gemma3_text",
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "num_hidden_layers": 34,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "vocab_size": 262208,
        "sliding_window": 1024,
        "query_pre_attn_scalar": 256,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "max_position_embeddings": 131072,
    },
    # Gemma 3 27B's text model (seed 004's anchor: a 27B QLoRA in under 22 GB); 54 GB in bf16 on disk.
    "gemma3-27b": {
        "model_type": "gemma3_text",
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "num_hidden_layers": 62,
        "num_attention_heads": 32,
        "num_key_value_heads": 16,
        "head_dim": 128,
        "vocab_size": 262208,
        "sliding_window": 1024,
        "query_pre_attn_scalar": 168,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "max_position_embeddings": 131072,
    },
    "llama-8b": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 8192,
    },
}

COMMON: dict[str, Any] = {
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,  # said explicitly: unsloth sets 2 unless told
    "max_seq_len": 2048,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.0,
    "learning_rate": 2e-4,
    "warmup_ratio": 0.1,
    "logging_steps": 1,
    "evaluate": False,
    "seed": 42,
}

# name → (what it is, config changes over COMMON). sift-default changes nothing: it is whatever
# TrainConfig's defaults are (backend auto, packing, kernels auto, sdpa, checkpointing on).
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "trl": (
        "anchor: transformers + peft + bnb + trl, packing, gradient checkpointing",
        # attention pinned: under `auto` the hf backend now picks Sift's flex_attention document masks
        {
            "backend": "hf",
            "packing": True,
            "gradient_checkpointing": True,
            "kernels": "none",
            "attn_implementation": "sdpa",
        },
    ),
    "trl-liger": (
        "anchor: trl with use_liger_kernel (packing, checkpointing)",
        {
            "backend": "hf",
            "packing": True,
            "gradient_checkpointing": True,
            "kernels": "liger",
            "attn_implementation": "sdpa",
        },
    ),
    "unsloth": (
        "anchor: unsloth (its checkpointing and kernels, packing)",
        {
            "backend": "unsloth",
            "packing": True,
            "gradient_checkpointing": True,
            "fp8_matmul": "off",
            "packed_attention": "segments",  # unsloth as it is: Sift's varlen attention is Sift's
        },
    ),
    "sift-default": ("**Sift default** (TrainConfig() as shipped)", {}),
    "sift-bf16": (
        "Sift default with the base products in bf16 (fp8_matmul off)",
        {"fp8_matmul": "off"},
    ),
    "sift-fp8": (
        "Sift, FP8 base products (fp8_matmul auto)",
        {"fp8_matmul": "auto"},
    ),
    "sift-nocudnn": (
        "Sift default, SDPA without cuDNN's attention (sdpa_cudnn false)",
        {"sdpa_cudnn": False},
    ),
    "sift-fp8-nocudnn": (
        "Sift, FP8 base products, SDPA without cuDNN's attention",
        {"fp8_matmul": "auto", "sdpa_cudnn": False},
    ),
    "sift-segments": (
        "Sift, unsloth's packed attention on torch 2.11: one SDPA call per conversation",
        {"packed_attention": "segments"},
    ),
    "sift-varlen": (
        "Sift, one flash varlen call per layer over each packed row (packed_attention varlen)",
        {"packed_attention": "varlen"},
    ),
    "sift-fp8-varlen": (
        "Sift, FP8 base products and flash varlen attention",
        {"fp8_matmul": "auto", "packed_attention": "varlen"},
    ),
    "sift-fp8fwd-varlen": (
        "Sift, FP8 in the forward base products only (SIFT_FP8_BACKWARD=0), flash varlen attention",
        {"fp8_matmul": "auto", "packed_attention": "varlen", "_env": {"SIFT_FP8_BACKWARD": "0"}},
    ),
    "sift-sdpa-varlen": (
        "Sift, unsloth with sdpa named (Gemma 3: unsloth refuses sdpa for it and runs eager)",
        {"attn_implementation": "sdpa"},
    ),
    "sift-fp8-fastbwd": (
        "Sift, FP8 base products, fast accumulation in the input-gradient products too",
        {"fp8_matmul": "auto", "_env": {"SIFT_FP8_FAST_BACKWARD": "1"}},
    ),
    "sift-fp8-fwd": (
        "Sift default, FP8 in the forward products only (SIFT_FP8_BACKWARD=0)",
        {"fp8_matmul": "auto", "_env": {"SIFT_FP8_BACKWARD": "0"}},
    ),
    "sift-liger-flex": (
        "Sift candidate: hf + liger + flex_attention per-conversation block masks",
        {
            "backend": "hf",
            "packing": True,
            "gradient_checkpointing": True,
            "kernels": "liger",
            "attn_implementation": "flex_attention",
        },
    ),
}
ANCHORS = ("trl", "trl-liger", "unsloth")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")

_BUILD = r"""
import json, sys, torch
from transformers import AutoConfig, AutoModelForCausalLM
spec, out = json.loads(sys.argv[1]), sys.argv[2]
mt = spec.pop("model_type")
cfg = AutoConfig.for_model(mt, **spec)
torch.manual_seed(0)
with torch.device("cuda"):
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
model.save_pretrained(out, max_shard_size="4GB")
print(out, sum(p.numel() for p in model.parameters()))
"""

# The FP8 base products on the device, before any run: each product's time against bf16's at the
# 8B layer sizes (8,192 token rows), the casts' and the FP8 GEMM's share, and their error against fp32.
_FP8CHECK = r"""
import json, torch
from trainer import fp8
dev = "cuda"
def ms(f, n=20):
    for _ in range(3): f()
    torch.cuda.synchronize(); s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n): f()
    e.record(); torch.cuda.synchronize(); return s.elapsed_time(e) / n
def rel(a, b): return float((a.float() - b.float()).norm() / b.float().norm())
out = {"supported": fp8.fp8_supported(), "products": []}
import bitsandbytes.functional as bnbf
try:
    from unsloth.kernels.utils import fast_dequantize
    def dequant(p, st): return fast_dequantize(p, st, use_global_buffer=True)
    out["dequant"] = "unsloth fast_dequantize"
except Exception as e:  # unsloth does not import: bitsandbytes' own
    def dequant(p, st): return bnbf.dequantize_4bit(p, st)
    out["dequant"] = f"bitsandbytes ({type(e).__name__})"
m = 8192
fp8.MIN_ELEMENTS[0] = 0
tot = {"bf16": 0.0, "fp8": 0.0, "fp8_torch_casts": 0.0, "bf16_bwd": 0.0, "fp8_bwd": 0.0}
# The 8B layer's products at 4 x 2048 tokens: q, k, v, o, gate, up, down (k, v: 1024 x 4096).
for name, n, k in (("q", 4096, 4096), ("k", 1024, 4096), ("v", 1024, 4096), ("o", 4096, 4096),
                   ("gate", 14336, 4096), ("up", 14336, 4096), ("down", 4096, 14336)):
    x = torch.randn(m, k, device=dev, dtype=torch.bfloat16); dy = torch.randn(m, n, device=dev, dtype=torch.bfloat16)
    w = (torch.randn(n, k, device=dev) / k**0.5).to(torch.bfloat16)
    packed, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    wd = dequant(packed, st).clone()
    ref = x.float() @ wd.float().t()
    row = {"proj": name, "n": n, "k": k}
    # The anchor: unsloth's dequantization to bf16, then torch's bf16 product (what unsloth runs).
    row["bf16_ms"] = ms(lambda: x @ dequant(packed, st).t()); row["bf16_bwd_ms"] = ms(lambda: dy @ dequant(packed, st))
    row["err_bf16"] = rel(x @ wd.t(), ref)
    fp8.base_forward(x, packed, st, dequant)  # learns the weight's scales, once
    fp8.TRITON[0] = True
    row["fp8_ms"] = ms(lambda: fp8.base_forward(x, packed, st, dequant)); row["err_fp8"] = rel(fp8.base_forward(x, packed, st, dequant), ref)
    row["fp8_bwd_ms"] = ms(lambda: fp8.base_backward(dy, packed, st, dequant))
    row["err_fp8_bwd"] = rel(fp8.base_backward(dy, packed, st, dequant), dy.float() @ wd.float())
    qa, sa = fp8.quantize_rows(x); qb, sb = fp8.weight_operand(packed, st, dequant, transposed=False, cache=True)
    row["gemm_only_ms"] = ms(lambda: fp8.scaled_mm(qa, sa, qb, sb, fast=True))
    row["cast_x_ms"] = ms(lambda: fp8.quantize_rows(x))
    row["cast_w_ms"] = ms(lambda: fp8.weight_operand(packed, st, dequant, transposed=False, cache=True))
    row["cast_wt_ms"] = ms(lambda: fp8.weight_operand(packed, st, dequant, transposed=True, cache=True))
    row["dequant_ms"] = ms(lambda: dequant(packed, st))
    fp8.TRITON[0] = False
    row["fp8_torch_casts_ms"] = ms(lambda: fp8.base_forward(x, packed, st, dequant))
    fp8.TRITON[0] = True
    for key, col in (("bf16", "bf16_ms"), ("fp8", "fp8_ms"), ("fp8_torch_casts", "fp8_torch_casts_ms"),
                     ("bf16_bwd", "bf16_bwd_ms"), ("fp8_bwd", "fp8_bwd_ms")):
        tot[key] += row[col] - (row["cast_x_ms"] if key == "fp8" and name in ("k", "v", "up") else 0.0)
    out["products"].append({k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()})
    del x, dy, w, wd, packed, st, ref, qa, qb
try:  # the down product's input: unsloth's SwiGLU kernel, then the row cast
    from unsloth.kernels.swiglu import swiglu_fg_kernel
    e = torch.randn(1, m, 14336, device=dev, dtype=torch.bfloat16); g = torch.randn_like(e)
    h = swiglu_fg_kernel(e, g)
    out["swiglu"] = {"unsloth_ms": round(ms(lambda: swiglu_fg_kernel(e, g)), 4), "cast_h_ms": round(ms(lambda: fp8.quantize_rows(h[0])), 4)}
    del e, g, h
except Exception as e:
    out["swiglu"] = {"error": repr(e)[:300]}
# The nf4 -> e4m3 cast's tile (rows, columns, warps) at the largest weight, both layouts: GB/s of its
# traffic (0.5 byte read + 1 written per weight).
try:
    from trainer import fp8_triton as ft
    w = (torch.randn(14336, 4096, device=dev) / 64).to(torch.bfloat16)
    packed, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    inv_n = torch.ones(14336, device=dev); inv_k = torch.ones(4096, device=dev)
    sweep = []
    for tile in ((64, 128, 8), (64, 128, 4), (32, 256, 4), (64, 256, 8), (128, 128, 8), (32, 512, 8), (128, 256, 8), (16, 1024, 8)):
        row = {"tile": tile}
        for tr in (False, True):
            t = ms(lambda: ft.nf4_to_e4m3(packed, st, inv_k if tr else inv_n, transposed=tr, tile=tile))
            row["t" if tr else "n"] = round(14336 * 4096 * 1.5 / t / 1e9, 1)
        sweep.append(row)
    out["nf4_tile_gbs"] = sweep
    del w, packed, st
except Exception as e:
    out["nf4_tile_gbs"] = {"error": repr(e)[:300]}
# The layer's forward products (q/k/v and gate/up share one cast of x) and input-gradient products.
out["layer_ms"] = {k2: round(v, 3) for k2, v in tot.items()}
print(json.dumps(out))
"""

_PEAK = r"""
import torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
times = []
for _ in range(20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); a @ b; e.record(); torch.cuda.synchronize()
    times.append(s.elapsed_time(e) / 1e3)
times.sort()
print(2 * n**3 / times[len(times) // 2] / 1e12)
"""


def bench_export(out: Path, n: int = 2000, seed: int = 7) -> Path:
    from tickets import generate_noisy

    from curation.formats import map_openai
    from trainer.manifest import write_export

    rows, _ = generate_noisy(n, seed=seed)
    convs = [map_openai(r)[0] for r in rows]
    return write_export(out, convs, convs[:8], version="bench-2000")


def useful_flops_per_token(shape: dict[str, Any], mean_len: float) -> float:
    """LoRA over a frozen base ≈ 4·N per token (forward 2N, backward through the activations 2N; no
    gradients for the frozen weights; re-computation under checkpointing not counted) plus causal
    attention over the conversation's own length (QKᵀ and PV: 4·L·d per token forward, twice that
    backward, half the pairs)."""
    h, layers, inter = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    hd = shape.get("head_dim") or h // shape["num_attention_heads"]
    q = shape["num_attention_heads"] * hd
    kv = shape.get("num_key_value_heads", shape["num_attention_heads"]) * hd
    n = layers * (2 * h * q + 2 * h * kv + 3 * h * inter) + shape["vocab_size"] * h
    attn = 3 * 4 * layers * mean_len * q / 2
    return 4 * n + attn


def build_model(name: str, folder: Path, tok_dir: Path) -> None:
    if (folder / "config.json").exists():
        return
    spec = dict(SHAPES[name])
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    spec.update(
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", _BUILD, json.dumps(spec), str(folder)], check=True, cwd=ROOT)
    for f in TOKENIZER_FILES:
        if (tok_dir / f).exists():
            shutil.copy(tok_dir / f, folder / f)
    print(f"built {name} in {time.monotonic() - t0:.0f} s", flush=True)


def run_config(name: str, export: Path, work: Path, model: Path, steps: int, lo: int, profile: bool) -> dict[str, Any]:
    desc, changes = CONFIGS[name]
    changes = dict(changes)
    env = {**os.environ, **changes.pop("_env", {})}
    cfg = {**COMMON, **changes, "max_steps": steps, "base_model": str(model)}
    if profile:
        cfg["profile_steps"] = 3  # steps 6..8, before the measured window
    run = work / name
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.json").write_text(json.dumps(cfg))
    t0 = time.monotonic()
    args = [sys.executable, "-m", "trainer", "--manifest", str(export), "--config", str(work / f"{name}.json")]
    try:
        r = subprocess.run(
            [*args, "--out", str(run)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=float(os.environ.get("SIFT_BENCH_TIMEOUT", "360")),
        )
        tail = (r.stdout + r.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        tail = f"timed out after {e.timeout:.0f} s"
    wall = time.monotonic() - t0
    status = json.loads((run / "status.json").read_text()) if (run / "status.json").exists() else {}
    out: dict[str, Any] = {"name": name, "what": desc, "state": status.get("state"), "wall_s": round(wall, 1)}
    if status.get("state") != "succeeded":
        out["error"] = status.get("error") or tail
        out["log_tail"] = tail
        return out
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    by_step = {x["step"]: x for x in rows if "loss" in x}
    if lo not in by_step or steps not in by_step:
        out["error"] = f"missing steps in metrics ({sorted(by_step)[:3]}…)"
        return out
    tokens = by_step[steps]["tokens"] - by_step[lo]["tokens"]
    seconds = by_step[steps]["ts"] - by_step[lo]["ts"]
    summary = status.get("summary", {})
    out.update(
        tokens_per_s=round(tokens / seconds, 1),
        s_per_step=round(seconds / (steps - lo), 4),
        tokens_per_step=round(tokens / (steps - lo), 1),
        peak_mem_gib=summary.get("peak_mem_gib"),
        loss_mean=round(sum(by_step[s]["loss"] for s in range(lo + 1, steps + 1)) / (steps - lo), 4),
        losses=[by_step[s]["loss"] for s in sorted(by_step)],
        kernels=summary.get("kernels"),
        attention=summary.get("attention"),
        matmul=summary.get("matmul"),
        backend=summary.get("backend"),
        packing=summary.get("packing"),
        gradient_checkpointing=summary.get("gradient_checkpointing"),
    )
    if (run / "profile.txt").exists():
        out["profile"] = (run / "profile.txt").read_text()[:30000]
    return out


def table(shape: str, results: list[dict[str, Any]], peak_tflops: float, mean_len: float, lo: int, steps: int) -> str:
    spec = SHAPES[shape]
    fpt = useful_flops_per_token(spec, mean_len)
    ok = [r for r in results if r.get("tokens_per_s")]
    anchors = [r for r in ok if r["name"] in ANCHORS]
    best = max(anchors, key=lambda r: r["tokens_per_s"]) if anchors else None
    lines = [
        f"#### {shape} (steps {lo + 1}–{steps}; best anchor: {best['name'] if best else '-'})",
        "",
        "| configuration | non-padding tokens/s | vs best anchor | s/step | tokens/step | peak allocated GiB "
        "| mean loss | loss vs best anchor | MFU | kernels / attention / checkpointing / base products |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r.get("tokens_per_s"):
            err = " ".join(str(r.get("error")).split())[-160:].replace("|", "/")
            lines.append(f"| {r['what']} | failed: {err} | | | | | | | | |")
            continue
        ratio = f"{r['tokens_per_s'] / best['tokens_per_s']:.2f}×" if best else "-"
        dloss = f"{(r['loss_mean'] / best['loss_mean'] - 1):+.2%}" if best else "-"
        mfu = r["tokens_per_s"] * fpt / (peak_tflops * 1e12)
        used = (
            f"{r.get('backend')}: {r.get('kernels')} / {r.get('attention')} / {r.get('gradient_checkpointing')}"
            f" / {r.get('matmul') or 'bf16'}"
        )
        lines.append(
            f"| {r['what']} | {r['tokens_per_s']:,.0f} | {ratio} | {r['s_per_step']:.3f} | "
            f"{r['tokens_per_step']:,.0f} | {r['peak_mem_gib']} | {r['loss_mean']} | {dloss} | {mfu:.1%} | {used} |"
        )
    return "\n".join(lines)


def main() -> dict[str, Any]:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        print("bench_train: needs CUDA (on the device machine: scripts/gpu_bench.sh)")
        return {"skipped": "needs CUDA"}
    from curation.models import load_tokenizer, resolve_model
    from trainer.data import render_all
    from trainer.manifest import load_export

    steps = int(os.environ.get("SIFT_BENCH_STEPS", "20"))
    lo = int(os.environ.get("SIFT_BENCH_LO", "8"))
    shapes = [s for s in os.environ.get("SIFT_BENCH_SHAPES", "llama-8b,llama-1b,gemma3-1b").split(",") if s]
    # A plain name runs at every shape; `shape:name` at that shape only.
    wanted = [n for n in os.environ.get("SIFT_BENCH_CONFIGS", ",".join(CONFIGS)).split(",") if n]
    profile = set(os.environ.get("SIFT_BENCH_PROFILE", "llama-8b:sift-default").split(","))
    tok_dir = Path(os.environ.get("SIFT_BENCH_TOKENIZER") or resolve_model())
    models = Path(os.environ.get("SIFT_BENCH_MODELS") or tempfile.mkdtemp(prefix="bench-models-"))
    out_dir = Path(os.environ.get("SIFT_BENCH_OUT") or tempfile.mkdtemp(prefix="bench-train-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-train-runs-"))
    export = bench_export(work / "export").parent
    rendered, stats = render_all(load_tokenizer(str(tok_dir)), load_export(export).train, COMMON["max_seq_len"])
    mean_len = sum(len(e.input_ids) for e in rendered) / len(rendered)
    peak = float(subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, check=True).stdout)
    dev = torch.cuda.get_device_name(0)
    fp8_check: dict[str, Any] = {"skipped": "SIFT_BENCH_FP8CHECK=0"}
    if os.environ.get("SIFT_BENCH_FP8CHECK", "1") != "0":  # ~40 s of device time
        check = subprocess.run([sys.executable, "-c", _FP8CHECK], capture_output=True, text=True, cwd=ROOT)
        fp8_check = (
            json.loads(check.stdout.strip().splitlines()[-1])
            if check.returncode == 0
            else {"error": check.stderr[-3000:]}
        )
    print("fp8_check " + json.dumps(fp8_check), flush=True)
    report: dict[str, Any] = {
        "device": dev,
        "measured_bf16_tflops": round(peak, 1),
        "steps": steps,
        "lo": lo,
        "mean_len": round(mean_len, 1),
        "render": stats,
        "fp8_check": fp8_check,
        "shapes": {},
    }
    print(f"{dev}: bf16 8192³ matmul {peak:.0f} TFLOP/s; data {stats}, mean {mean_len:.0f} tokens", flush=True)
    tables = []
    for shape in shapes:
        folder = models / shape
        build_model(shape, folder, tok_dir)
        results: list[dict[str, Any]] = []
        report["shapes"][shape] = results
        # In the order SIFT_BENCH_CONFIGS names them (the default: CONFIGS' order).
        order = [w.split(":")[-1] for w in wanted if ":" not in w or w.startswith(f"{shape}:")]
        for name in [n for n in dict.fromkeys(order) if n in CONFIGS]:
            res = run_config(
                name, export, work / shape, folder, steps, lo, f"{shape}:{name}" in profile or name in profile
            )
            results.append(res)
            (out_dir / "bench_train.json").write_text(json.dumps(report, indent=2))
            brief = {k: v for k, v in res.items() if k not in ("profile", "losses", "log_tail")}
            print(json.dumps({"shape": shape, **brief})[:1200], flush=True)
            if res.get("profile"):
                (out_dir / f"profile-{shape}-{name}.txt").write_text(res["profile"])
        tables.append(table(shape, results, peak, mean_len, lo, steps))
        (out_dir / "bench_train.md").write_text("\n\n".join(tables) + "\n")
        print("\n" + tables[-1] + "\n", flush=True)
        if os.environ.get("SIFT_BENCH_KEEP_MODELS") != "1":
            shutil.rmtree(folder, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
