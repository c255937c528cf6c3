"""Does FP8 in the base products change what a real model learns? SmolLM2-135M-Instruct (the embedded
model: real weights), LoRA r16 on all linear layers, trained on the same ticket batches three ways:

- fp32: every product in fp32 (the reference);
- bf16: the base products in bf16, LoRA in bf16 (unsloth's arithmetic);
- fp8: the base products through trainer/fp8.py (e4m3, a power-of-two scale per row/column), LoRA
  in bf16 (Sift's default on an FP8 GPU);
- fp8-fwd: FP8 in the forward products only, the input-gradient products in bf16.

The held-out loss is computed in fp32 for all four (the trained LoRA weights, evaluated the same
way), so it measures what each run learned, not the arithmetic of the evaluation.

On the CPU the FP8 operands are the ones the GPU kernel gets, multiplied in fp32 (trainer/fp8.py,
`scaled_mm`), so the rounding measured here is the FP8 casts' — the GPU adds only its fp32
accumulation order. Reports the first step's loss and the cosine of every LoRA gradient against
fp32's, and the held-out loss after the same steps.

    .venv/bin/python bench/bench_fp8_numerics.py   # SIFT_BENCH_FP8_STEPS (30), _SEEDS (0), _MODES
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "datasets"))  # the sample generator, imported as `tickets`

from trainer import fp8  # noqa: E402

STEPS = int(os.environ.get("SIFT_BENCH_FP8_STEPS", "30"))
BATCH, MAX_LEN = 4, 384
FP32_EVAL = [False]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batches(tok: Any, seed: int = 0) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    from tickets import generate_noisy

    from curation.formats import map_openai
    from trainer.data import render_all

    rows, _ = generate_noisy(400, seed=7)
    ex, _stats = render_all(tok, [map_openai(r)[0] for r in rows], MAX_LEN)
    ex = [e for e in ex if any(x != -100 for x in e.labels)]
    random.Random(seed).shuffle(ex)

    def pad(group: list[Any]) -> dict[str, torch.Tensor]:
        n = max(len(e.input_ids) for e in group)
        ids = torch.full((len(group), n), tok.pad_token_id or 0)
        labels = torch.full((len(group), n), -100)
        mask = torch.zeros((len(group), n), dtype=torch.long)
        for i, e in enumerate(group):
            ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
            labels[i, : len(e.labels)] = torch.tensor(e.labels)
            mask[i, : len(e.input_ids)] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    train = [pad(ex[i : i + BATCH]) for i in range(0, STEPS * BATCH, BATCH)]
    held = [pad(ex[i : i + BATCH]) for i in range(STEPS * BATCH, STEPS * BATCH + 32, BATCH)]
    return train, held


def lora_model(mode: str, seed: int = 0) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from curation.models import resolve_model

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(resolve_model(), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS))
    if mode == "fp32":
        return model
    for module in model.modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            module.forward = _patched(module, mode)
    return model


def _patched(module: Any, mode: str) -> Any:
    name = module.active_adapters[0]
    w = module.base_layer.weight.detach().to(torch.bfloat16)
    a, b, s = module.lora_A[name].weight, module.lora_B[name].weight, module.scaling[name]
    original = module.forward

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if FP32_EVAL[0]:
            return original(x, *args, **kwargs)
        return fp8.LoraLinearFP8.apply(x.to(torch.bfloat16), w, None, a, b, s, fp8._identity).to(x.dtype)

    return forward


def lora_grads(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def heldout(model: Any, held: list[dict[str, torch.Tensor]]) -> float:
    FP32_EVAL[0] = True
    try:
        with torch.no_grad():
            return sum(float(model(**b).loss) for b in held) / len(held)
    finally:
        FP32_EVAL[0] = False


def run(
    mode: str, train: list[dict[str, torch.Tensor]], held: list[dict[str, torch.Tensor]], seed: int = 0
) -> dict[str, Any]:
    # Every product through FP8 (this model's weights are small), or none, or the forward ones only.
    fp8.MIN_ELEMENTS[0] = {"fp8": 0, "fp8-fwd": 0}.get(mode, 1 << 62)
    fp8.BACKWARD[0] = mode == "fp8"
    model = lora_model(mode, seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    losses, first_grads = [], {}
    t0 = time.monotonic()
    for i, b in enumerate(train):
        loss = model(**b).loss
        loss.backward()
        if i == 0:
            first_grads = lora_grads(model)
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return {"mode": mode, "losses": losses, "heldout": heldout(model, held), "grads": first_grads,
            "s": round(time.monotonic() - t0, 1)}  # fmt: skip


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float, str]:
    """Over the LoRA gradients that are not zero in fp32 (at step 1 lora_B is zero, so are lora_A's)."""
    cs = {k: float(torch.nn.functional.cosine_similarity(a[k].flatten().float(), b[k].flatten().float(), dim=0))
          for k in a if float(b[k].norm()) > 0}  # fmt: skip
    worst = min(cs, key=lambda k: cs[k])
    return cs[worst], sum(cs.values()) / len(cs), worst.replace("base_model.model.model.", "")


def one_seed(tok: Any, seed: int, modes: list[str]) -> dict[str, Any]:
    train, held = batches(tok, seed)
    runs = {m: run(m, train, held, seed) for m in modes}
    ref = runs["fp32"]
    report: dict[str, Any] = {"seed": seed, "load": os.getloadavg()[0]}
    print(f"\nseed {seed}: SmolLM2-135M + LoRA r16, {STEPS} steps of {BATCH} ticket conversations (≤ {MAX_LEN} "
          f"tokens), load {report['load']:.1f}")  # fmt: skip
    print("| base products | step-1 loss | mean loss, all steps | held-out loss after | vs fp32 | LoRA grad cosine vs fp32 "
          "(min / mean) | worst | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for m, r in runs.items():
        lo, mean, worst = cosine(r["grads"], ref["grads"])
        mean_loss = sum(r["losses"]) / len(r["losses"])
        report[m] = {"step1": r["losses"][0], "mean_loss": mean_loss, "heldout": r["heldout"], "cos_min": lo,
                     "cos_mean": mean, "worst": worst, "s": r["s"]}  # fmt: skip
        print(f"| {m} | {r['losses'][0]:.4f} | {mean_loss:.4f} | {r['heldout']:.4f} | "
              f"{r['heldout'] / ref['heldout'] - 1:+.2%} | {lo:.4f} / {mean:.4f} | {worst} | {r['s']} |", flush=True)  # fmt: skip
    assert all(math.isfinite(report[m]["heldout"]) for m in runs)
    return report


def main() -> dict[str, Any]:
    from curation.models import load_tokenizer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    seeds = [int(x) for x in os.environ.get("SIFT_BENCH_FP8_SEEDS", "0").split(",")]
    modes = os.environ.get("SIFT_BENCH_FP8_MODES", "fp32,bf16,fp8,fp8-fwd").split(",")
    tok = load_tokenizer()
    reports = [one_seed(tok, seed, modes) for seed in seeds]
    if len(seeds) > 1:
        print(f"\nover seeds {seeds}: held-out loss after {STEPS} steps, and each seed's difference from bf16")
        print("| base products | held-out loss, mean | vs bf16, each seed | vs bf16, mean |")
        print("|---|---|---|---|")
        for m in modes:
            held = [r[m]["heldout"] for r in reports]
            diffs = [r[m]["heldout"] / r["bf16"]["heldout"] - 1 for r in reports] if "bf16" in modes else []
            each = ", ".join(f"{d:+.2%}" for d in diffs)
            mean_diff = f"{sum(diffs) / len(diffs):+.2%}" if diffs else "-"
            print(f"| {m} | {sum(held) / len(held):.4f} | {each} | {mean_diff} |")
    out = {"steps": STEPS, "batch": BATCH, "max_len": MAX_LEN, "seeds": reports}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
