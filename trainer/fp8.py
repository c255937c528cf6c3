"""FP8 matrix products for the frozen 4-bit base of a QLoRA run (config field `fp8_matmul`).

Under QLoRA the base weights never train: each linear layer's product with its base weight is one
forward product (and once more when checkpointing recomputes it) and one backward product for the
input's gradient; there is no weight gradient. Those products are most of a large model's step
(66-68% of the GPU time at the 8B and 27B shapes, BENCHMARKS.md). Here they run on the FP8 tensor
cores (`torch._scaled_mm`, H100/H200/Ada: twice bf16's rate), while everything that trains stays as
it was: the LoRA products, their gradients, the activations, norms, attention and the loss are
bf16 and unchanged.

Status (BENCHMARKS.md, "FP8 base products"): with the fused Triton casts (trainer/fp8_triton.py) an
8B layer's base products take ~3.0 ms forward against unsloth's 4.75 (H100), but in training the
8B step gave 1.05x unsloth (first version) and then 0.89x (this code; 0.91x at 1B), with 0.31 GiB
more memory: the GPU work fell by ~140 ms a step, yet the step became host-bound (GPU busy 0.68 s of
0.95 s). With one flash varlen attention call per layer (trainer/varlen.py) taking the host's largest
cost away, the 8B step was 1.51x unsloth on an H200 (loss +0.04%), but peaked 0.148 GiB over unsloth:
the MLP backward computed the down projection's LoRA input gradient twice and dropped one (436 MiB at
the peak, found by the profile's memory section). With that fixed (`_lora_ab_grads`), the default run
on an H100 (one invocation, same data): 8B 1.56x unsloth at 7.493 GiB against its 7.617, loss +0.17%;
1B 1.98x at 1.976 GiB against 1.997 (bf16 products with the same attention: 1.19x and 1.89x). So
`fp8_matmul` is `auto` by default. The full table with every anchor in one invocation (H100): 1.55x
unsloth at 8B, 1.56x at 1B (unsloth's 1B path is host-bound and moved 27% between the runs), loss
+0.10%; Gemma 3 untouched (unsloth's compiled path, no fused LoRA functions to take), a tie.

The arithmetic, per product `X @ W.T` (forward) and `dY @ W` (backward):
- W is cast to float8 e4m3 with one scale per output row (forward) or per input column (backward):
  on CUDA straight from nf4 (one Triton kernel, the bf16 value bitsandbytes would write, scaled);
  elsewhere dequantized to bf16 first (unsloth's kernel), then cast;
- X (or dY) is cast to e4m3 with one scale per token row;
- scales are powers of two, so scaling is exact and only the cast to 3 mantissa bits rounds;
- the product accumulates in fp32 and comes back in bf16.

This is not unsloth's arithmetic, so its loss is compared with unsloth's in the benchmark rather
than assumed equal. Where the product cannot run in FP8 (no CUDA, a GPU before sm_89, a dimension
not a multiple of 16) or would not gain (a weight under MIN_ELEMENTS) the bf16 product runs instead. On the CPU the same quantized operands are
multiplied in fp32 (`scaled_mm`), so the tests check the scales, layouts and gradients that the GPU
kernel receives.

`install(model)` swaps unsloth's fused LoRA functions of each decoder layer (q/k/v, o, and the
gated MLP) for the ones below, which keep unsloth's memory plan (the MLP saves X, e and g only and
recomputes h; LoRA dropout keeps a 1-byte mask per element, as unsloth's fused dropout does) and
change only the base products. They train only: a module in eval mode (evaluation, generation)
calls unsloth's own. Layers it cannot take (a bias on the LoRA path, DoRA, several adapters, a base
that is not nf4) keep unsloth's functions.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0


def fp8_supported(device: torch.device | None = None) -> bool:
    """CUDA with FP8 tensor cores (compute capability 8.9 or later) and torch's scaled product."""
    if not torch.cuda.is_available() or not hasattr(torch, "_scaled_mm"):
        return False
    major, minor = torch.cuda.get_device_capability(device)
    return (major, minor) >= (8, 9)


# Where `fp8_matmul: auto` turns FP8 on: the GPUs it was measured faster on (Hopper, sm_90: H100 and
# H200; BENCHMARKS.md). Ada (8.9) and Blackwell (10.x, 12.x) have FP8 tensor cores too, but were never
# timed here, so auto keeps them on bf16 and `fp8_matmul: on` is the way to try them.
MEASURED_CAPABILITIES = ((9, 0),)


def auto_takes(capability: tuple[int, int]) -> bool:
    """Whether `fp8_matmul: auto` uses FP8 on a GPU of this compute capability."""
    return tuple(capability) in MEASURED_CAPABILITIES


def _pow2_scale(amax: torch.Tensor) -> torch.Tensor:
    """The smallest power of two s with amax / s <= 448 (fp32; tiny but finite for an all-zero row).
    From amax's bits, exactly (a float log2 can round 2**k * (1 + 2**-23) down to k, and the row then
    overflows e4m3): 448 = 1.75 * 2**8, so for amax = m * 2**E (1 <= m < 2) s = 2**(E - 8), doubled
    when m > 1.75. trainer/fp8_triton.py computes the same."""
    bits = amax.float().clamp(min=2.0**-100).contiguous().view(torch.int32)
    j = ((bits >> 23) & 255) - 127 - 8 + ((bits & 0x7FFFFF) > 0x600000).to(torch.int32)
    return ((j + 127) << 23).view(torch.float32)


# The fused Triton casts (trainer/fp8_triton.py) on CUDA; SIFT_FP8_TRITON=0 (read by install()) keeps
# the torch casts, for comparison. False once Triton fails to import.
TRITON = [True]


def _fast(t: torch.Tensor) -> Any:
    """trainer.fp8_triton where t is on CUDA and Triton imports, else None."""
    if not t.is_cuda or not TRITON[0]:
        return None
    try:
        from trainer import fp8_triton
    except Exception:  # no Triton: the torch casts
        TRITON[0] = False
        return None
    return fp8_triton


# Products with a smaller weight stay bf16: there the casts cost several times the FP8 product's
# saving (measured on an H100 at 8,187 token rows: a 1,024 x 4,096 product took 0.09 ms in bf16 and
# 0.24-0.29 ms through FP8 with its casts; bench_train's fp8_check, BENCHMARKS.md).
MIN_ELEMENTS = [8 << 20]

# The scales of a frozen weight, computed once from its first dequantization: key id(packed weight)
# -> (the packed weight, 1/row scale (N, 1) bf16, row scale (1, N) fp32, 1/column scale (1, K) bf16,
# column scale (1, K) fp32, 1/row scale (N,) fp32, 1/column scale (K,) fp32). Powers of two, so
# 1/scale is exact and scaling is one multiply.
_WEIGHT_SCALES: dict[int, tuple[Any, ...]] = {}


def weight_scales(w: torch.Tensor, key: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    inv_row, s_row, inv_col, s_col = _scales(w, key)[:4]
    return inv_row, s_row, inv_col, s_col


def _scales(w: torch.Tensor, key: Any = None) -> tuple[torch.Tensor, ...]:
    hit = _cached_scales(key)
    if hit is not None:
        return hit
    s_row = _pow2_scale(torch.linalg.vector_norm(w, ord=float("inf"), dim=1, keepdim=True))  # (N, 1)
    s_col = _pow2_scale(torch.linalg.vector_norm(w, ord=float("inf"), dim=0, keepdim=True))  # (1, K)
    inv_row, inv_col = s_row.reciprocal(), s_col.reciprocal()
    val = (inv_row.to(w.dtype), s_row.t().contiguous(), inv_col.to(w.dtype), s_col,
           inv_row.flatten().contiguous(), inv_col.flatten().contiguous())  # fmt: skip
    if key is not None:
        _WEIGHT_SCALES[id(key)] = (key, *val)
    return val


def _cached_scales(key: Any) -> tuple[torch.Tensor, ...] | None:
    hit = _WEIGHT_SCALES.get(id(key)) if key is not None else None
    return hit[1:] if hit is not None and hit[0] is key else None


def quantize_rows(x: torch.Tensor, pad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> (q, s): q (rows, K) e4m3 row-major, s (rows, 1) fp32, with x[i] ~= q[i] * s[i]. With
    `pad` the rows go up to the multiple of 16 the GPU kernel takes (zero rows, scale 1). On CUDA with
    Triton: one pass of trainer/fp8_triton.py (0.038 ms at 8,192 x 4,096 on an H100). Otherwise in torch
    ops: a reduction, small scale kernels and a multiply into e4m3 (which torch writes through a bf16
    temporary; 0.21 ms there, ~4x the memory-bandwidth bound). Both give the same bits."""
    fast = _fast(x)
    if fast is not None:
        return fast.quantize_rows(x, pad=pad)
    m, k = x.shape
    rows = -(-m // 16) * 16 if pad else m
    s = _pow2_scale(torch.linalg.vector_norm(x, ord=float("inf"), dim=1, keepdim=True))
    q = torch.empty((rows, k), dtype=E4M3, device=x.device)
    torch.mul(x, s.reciprocal().to(x.dtype), out=q[:m])
    if rows > m:
        q[m:].zero_()
        s = torch.cat([s, s.new_ones((rows - m, 1))])
    return q, s


def quantize_weight(w: torch.Tensor, *, transposed: bool, key: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The right-hand operand, column-major as the kernel takes it (a multiply into e4m3).

    w is the base weight (N, K) in bf16. Forward (`X @ w.T`, transposed=False): returns b (K, N)
    column-major and its scales (1, N), one per row of w. Backward (`dY @ w`, transposed=True):
    returns b (N, K) column-major and scales (1, K), one per column of w. `key` (the packed weight
    w was dequantized from) keeps the scales from the first call.
    """
    inv_row, s_row, inv_col, s_col = weight_scales(w, key)
    if not transposed:
        q = torch.empty(w.shape, dtype=E4M3, device=w.device)  # (N, K) row-major
        torch.mul(w, inv_row, out=q)
        return q.t(), s_row
    q = torch.empty((w.shape[1], w.shape[0]), dtype=E4M3, device=w.device)  # (K, N) row-major
    torch.mul(w.t(), inv_col.t(), out=q)
    return q.t(), s_col


def scaled_mm(a: torch.Tensor, sa: torch.Tensor, b: torch.Tensor, sb: torch.Tensor, *, fast: bool) -> torch.Tensor:
    """(a * sa) @ (b * sb) in bf16: a (M, K) e4m3 row-major, b (K, N) e4m3 column-major, sa (M, 1),
    sb (1, N). torch's FP8 GEMM on CUDA; on the CPU the same operands multiplied in fp32."""
    if a.is_cuda:
        return torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16, use_fast_accum=fast)
    return ((a.float() * sa) @ (b.float() * sb)).to(torch.bfloat16)


def uses_fp8(x: torch.Tensor, w: torch.Tensor | tuple[int, int]) -> bool:
    n, k = w if isinstance(w, tuple) else w.shape
    return n * k >= MIN_ELEMENTS[0] and x.shape[-1] % 16 == 0 and n % 16 == 0 and k % 16 == 0


# A base weight as the functions below take it: (packed weight, quant state) and the function that
# dequantizes it to bf16 (N, K). unsloth's fast_dequantize on the GPU; the identity in the tests
# (state None: the weight is already bf16).
Dequant = Callable[[Any, Any], torch.Tensor]


def _identity(w: Any, _state: Any) -> torch.Tensor:
    return w


def _dims(w: torch.Tensor, state: Any) -> tuple[int, int]:
    n, k = state.shape if state is not None else w.shape
    return int(n), int(k)


def weight_operand(
    w: torch.Tensor, state: Any, dequant: Dequant, *, transposed: bool, cache: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The FP8 right-hand operand of a base weight and its scales (quantize_weight's contract). On
    CUDA with Triton an nf4 weight whose scales are known goes straight from nf4 to e4m3 in one
    kernel; otherwise (and the first time, to learn its scales) it is dequantized to bf16 and cast."""
    fast = _fast(w) if state is not None else None
    scales = _cached_scales(w) if fast is not None else None
    if fast is not None and scales is not None and fast.nf4_supported(state):
        inv = scales[5] if transposed else scales[4]
        return fast.nf4_to_e4m3(w, state, inv, transposed=transposed), scales[3] if transposed else scales[1]
    wd = getattr(dequant, "once", dequant)(w, state) if fast is not None else dequant(w, state)
    return quantize_weight(wd, transposed=transposed, key=w if cache else None)


def base_forward(
    x: torch.Tensor, w: torch.Tensor, state: Any = None, dequant: Dequant = _identity,
    xq: tuple[torch.Tensor, torch.Tensor] | None = None, cache: bool | None = None,
) -> torch.Tensor:  # fmt: skip
    """x (M, K) @ W.T for the base weight W (N, K) = dequant(w, state), through FP8 when the shapes
    allow it. `xq`: x already quantized (q, k and v, gate and up share their input). `cache`: keep
    W's scales under w (default: for a quantized weight, which is frozen)."""
    if not uses_fp8(x, _dims(w, state)):
        return x @ dequant(w, state).t()
    qa, sa = xq if xq is not None else quantize_rows(x)
    qb, sb = weight_operand(w, state, dequant, transposed=False, cache=state is not None if cache is None else cache)
    return scaled_mm(qa, sa, qb, sb, fast=True)[: x.shape[0]]


# Whether the input-gradient products run in FP8 too (install() reads SIFT_FP8_BACKWARD; 0 keeps
# them bf16, FP8 in the forward products only), and whether they use the tensor cores' fast
# accumulation as the forward products do (SIFT_FP8_FAST_BACKWARD=1; off: exact fp32 accumulation).
BACKWARD = [True]
FAST_BACKWARD = [False]


def base_backward(
    dy: torch.Tensor, w: torch.Tensor, state: Any = None, dequant: Dequant = _identity, cache: bool | None = None
) -> torch.Tensor:
    """dy (M, N) @ W for the base weight W (N, K) = dequant(w, state): the input's gradient, through
    FP8 when the shapes allow it. fp32 accumulation (no fast accumulation) as for every gradient
    product, unless FAST_BACKWARD."""
    n, k = _dims(w, state)
    if not BACKWARD[0] or not uses_fp8(dy, (k, n)):
        return dy @ dequant(w, state)
    qa, sa = quantize_rows(dy)
    qb, sb = weight_operand(w, state, dequant, transposed=True, cache=state is not None if cache is None else cache)
    return scaled_mm(qa, sa, qb, sb, fast=FAST_BACKWARD[0])[: dy.shape[0]]


def _drop(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """LoRA dropout on the LoRA path's input (the base product reads x itself, as in peft): the kept
    mask (bool, 1 byte per element, saved for the backward pass) and x scaled by 1/(1-p) where kept."""
    if not p:
        return x, None
    keep = torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(1.0 - p)
    return _dropped(x, keep, p), keep


def _dropped(x: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """x with the dropout kept by `keep`: one new tensor, the scaling done in place (the same
    operations in the same order as x * keep * (1 / (1 - p)), without its second temporary)."""
    return x if keep is None else torch.mul(x, keep).mul_(1.0 / (1.0 - p))


def _add_lora(y: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, s: float) -> None:
    """y += s * (x A^T) B^T in place, the add done by the second product (addmm's beta, as unsloth's
    matmul_lora): no (M, N) temporary is written and read back."""
    y.addmm_(x @ a.t().to(x.dtype), b.t().to(x.dtype), alpha=s)


def _lora_dx(dx: torch.Tensor | None, dy_b: torch.Tensor, a: torch.Tensor, s: float,
             keep: torch.Tensor | None, p: float) -> torch.Tensor:  # fmt: skip
    """The LoRA part of the input's gradient, s * d(dy B) A with d the dropout kept by `keep`, added
    into `dx` in place when given (by the product itself where there is no dropout)."""
    if dx is not None and keep is None:
        return dx.addmm_(dy_b, a, alpha=s)
    part = (dy_b @ a).mul_(s)
    if keep is not None:
        part.mul_(keep).mul_(1.0 / (1.0 - p))
    return part if dx is None else dx.add_(part)


def _lora_ab_grads(
    x: torch.Tensor, dy: torch.Tensor, a: torch.Tensor, b: torch.Tensor, s: float,
    keep: torch.Tensor | None = None, p: float = 0.0, dy_b: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """For y = s * (d(x) A^T) B^T with A (r, in), B (out, r) and d the dropout kept by `keep`: dA, dB
    and dy B (`dy_b`, computed here unless the caller has it)."""
    xd = _dropped(x, keep, p)
    a_, b_ = a.to(x.dtype), b.to(x.dtype)
    dy_b = dy @ b_ if dy_b is None else dy_b  # (M, r)
    d_a = (dy_b.t() @ xd) * s
    d_b = (dy.t() @ (xd @ a_.t())) * s
    return d_a.to(a.dtype), d_b.to(b.dtype), dy_b


def _lora_grads(
    x: torch.Tensor, dy: torch.Tensor, a: torch.Tensor, b: torch.Tensor, s: float,
    keep: torch.Tensor | None = None, p: float = 0.0, dx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """dA, dB (`_lora_ab_grads`) and the LoRA part of dx (`_lora_dx`, into `dx` when given)."""
    d_a, d_b, dy_b = _lora_ab_grads(x, dy, a, b, s, keep, p)
    return d_a, d_b, _lora_dx(dx, dy_b, a.to(x.dtype), s, keep, p)


# Each projection comes as six values: (packed weight, quant state, lora_A, lora_B, scale, dropout p).
P = 6


class LoraLinearFP8(torch.autograd.Function):
    """y = x @ W^T + s * (d(x) A^T) B^T over a frozen base W; saves x (and the dropout mask) only:
    W is dequantized again in the backward pass, as unsloth does."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: Any, state: Any, a: torch.Tensor, b: torch.Tensor, s: float,
                dequant: Dequant, p: float = 0.0) -> torch.Tensor:  # fmt: skip
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        y = base_forward(x2, w, state, dequant)
        xd, keep = _drop(x2, p)
        _add_lora(y, xd, a, b, s)
        del xd
        ctx.save_for_backward(x2, a, b, keep)
        ctx.w, ctx.state, ctx.s, ctx.p, ctx.dequant, ctx.shape = w, state, s, p, dequant, shape
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x2, a, b, keep = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = base_backward(dy2, ctx.w, ctx.state, ctx.dequant)
        d_a, d_b, dx = _lora_grads(x2, dy2, a, b, ctx.s, keep, ctx.p, dx)
        return dx.view(ctx.shape), None, None, d_a, d_b, None, None, None


class LoraQKVFP8(torch.autograd.Function):
    """q, k, v = three LoRA linears over the same x (unsloth's LoRA_QKV, base products in FP8)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dequant: Dequant, *params: Any) -> tuple[torch.Tensor, ...]:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        outs, saved, ctx.bases = [], [], []
        xq = None  # x quantized once for the three products
        for w, state, a, b, s, p in (params[0:P], params[P : 2 * P], params[2 * P : 3 * P]):
            if xq is None and uses_fp8(x2, _dims(w, state)):
                xq = quantize_rows(x2)
            y = base_forward(x2, w, state, dequant, xq)
            xd, keep = _drop(x2, p)
            _add_lora(y, xd, a, b, s)
            del xd
            outs.append(y.view(*shape[:-1], y.shape[-1]))
            saved += [a, b, keep]
            ctx.bases.append((w, state, s, p))
        ctx.save_for_backward(x2, *saved)
        ctx.dequant, ctx.shape = dequant, shape
        return tuple(outs)

    @staticmethod
    def backward(ctx: Any, *dys: torch.Tensor) -> tuple[Any, ...]:
        x2, *saved = ctx.saved_tensors
        grads: list[Any] = []
        dx: torch.Tensor | None = None
        for j, dy in enumerate(dys):
            w, state, s, p = ctx.bases[j]
            a, b, keep = saved[3 * j : 3 * j + 3]
            dy2 = dy.reshape(-1, dy.shape[-1])
            if dx is None:
                dx = base_backward(dy2, w, state, ctx.dequant)
            else:
                dx += base_backward(dy2, w, state, ctx.dequant)
            d_a, d_b, dx = _lora_grads(x2, dy2, a, b, s, keep, p, dx)
            grads += [None, None, d_a, d_b, None, None]
        assert dx is not None
        return (dx.view(ctx.shape), None, *grads)


class LoraGatedMLPFP8(torch.autograd.Function):
    """down(act(gate(x)) * up(x)) with LoRA on all three (unsloth's LoRA_MLP with its activation
    kernels: saves x, e = gate(x), g = up(x) and recomputes h in the backward pass)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dequant: Dequant, fwd: Callable[..., Any], bwd: Callable[..., Any],
                *params: Any) -> torch.Tensor:  # fmt: skip
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        (gw, gq, ga, gb, gs, gp), (uw, uq, ua, ub, us, up), (dw, dq, da, db, ds, dp) = (
            params[0:P], params[P : 2 * P], params[2 * P : 3 * P])  # fmt: skip
        xq = quantize_rows(x2) if uses_fp8(x2, _dims(gw, gq)) else None
        e = base_forward(x2, gw, gq, dequant, xq)
        xd, g_keep = _drop(x2, gp)
        _add_lora(e, xd, ga, gb, gs)
        g = base_forward(x2, uw, uq, dequant, xq)
        del xq
        xd, u_keep = _drop(x2, up)
        _add_lora(g, xd, ua, ub, us)
        del xd
        h = fwd(e.view(1, *e.shape), g.view(1, *g.shape)).view(e.shape)  # unsloth's forward kernels take 3-D
        out = base_forward(h, dw, dq, dequant)
        hd, d_keep = _drop(h, dp)
        _add_lora(out, hd, da, db, ds)
        del hd, h
        ctx.save_for_backward(x2, e, g, ga, gb, ua, ub, da, db, g_keep, u_keep, d_keep)
        ctx.bases = ((gw, gq, gs, gp), (uw, uq, us, up), (dw, dq, ds, dp))
        ctx.dequant, ctx.bwd, ctx.shape = dequant, bwd, shape
        return out.view(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x2, e, g, ga, gb, ua, ub, da, db, g_keep, u_keep, d_keep = ctx.saved_tensors
        (gw, gq, gs, gp), (uw, uq, us, up), (dw, dq, ds, dp) = ctx.bases
        dy2 = dy.reshape(-1, dy.shape[-1])
        dy_b = dy2 @ db.to(dy2.dtype)  # once: dh's LoRA part now, the down LoRA's gradients below
        dh = _lora_dx(base_backward(dy2, dw, dq, ctx.dequant), dy_b, da.to(dy2.dtype), ds, d_keep, dp)
        # unsloth's kernel contract: (dh, e, g) -> (h, df, de), in place.
        h, df, de = ctx.bwd(dh, e, g)
        # dA and dB only: the down projection's input gradient is dh, done above (computing it again
        # here, and dropping it, cost two (rows, intermediate) temporaries at the step's memory peak)
        d_da, d_db = _lora_ab_grads(h, dy2, da, db, ds, d_keep, dp, dy_b=dy_b)[:2]
        del h, dh, dy_b  # one (rows, intermediate) buffer freed before the two input-gradient products
        dx = base_backward(df, uw, uq, ctx.dequant)
        dx += base_backward(de, gw, gq, ctx.dequant)
        d_ua, d_ub, dx = _lora_grads(x2, df, ua, ub, us, u_keep, up, dx)
        d_ga, d_gb, dx = _lora_grads(x2, de, ga, gb, gs, g_keep, gp, dx)
        return (
            dx.view(ctx.shape), None, None, None,
            None, None, d_ga, d_gb, None, None,
            None, None, d_ua, d_ub, None, None,
            None, None, d_da, d_db, None, None,
        )  # fmt: skip


# ---------------------------------------------------------------------- torch reference activations


# Same contracts as unsloth's kernels: the forward takes (batch, seq, hidden), the backward takes
# 2-D rows (its first run on the GPU failed on exactly that).


def swiglu_forward(e: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    _batch, _seq_len, _hd = e.shape  # unsloth's swiglu_fg_kernel unpacks the same way
    return (torch.nn.functional.silu(e.float()).to(g.dtype) * g).to(g.dtype)


def swiglu_backward(dh: torch.Tensor, e: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(dh, e, g) -> (h, df, de) as unsloth's swiglu_DWf_DW_dfg_kernel returns them (f = up, e = gate)."""
    _rows, _hd = e.shape  # as unsloth's backward kernel
    ef = e.float()
    sig = torch.sigmoid(ef)
    silu = ef * sig
    f = silu.to(e.dtype)  # rounded before the product, as unsloth's kernels do
    h = f * g
    df = (dh.float() * f.float()).to(e.dtype)
    de = (dh.float() * g.float() * sig * (1 + ef * (1 - sig))).to(e.dtype)
    return h, df, de


# ---------------------------------------------------------------------- installing into unsloth's model


@dataclass
class Installed:
    """What install() did: how many projections run their base product in FP8, and why the others
    did not (for the run folder)."""

    projections: int = 0
    layers: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    @property
    def label(self) -> str:
        return f"fp8 e4m3 rowwise ({self.projections} projections)" if self.projections else "bf16"


def lora_plain(proj: Any) -> bool:
    """A peft LoRA projection with one active adapter (plain or dropout), no bias, no DoRA."""
    adapters = getattr(proj, "active_adapters", None)
    if not adapters or len(adapters) != 1:
        return False
    name = adapters[0]
    if dict(getattr(proj, "use_dora", {}) or {}).get(name):
        return False
    drops = getattr(proj, "lora_dropout", None)
    if drops is None or name not in drops or not isinstance(drops[name], (torch.nn.Identity, torch.nn.Dropout)):
        return False
    if getattr(proj.lora_B[name], "bias", None) is not None:
        return False
    base = getattr(proj, "base_layer", None)
    return base is not None and getattr(base, "bias", None) is None


def _plain(proj: Any) -> bool:
    """A plain LoRA projection (above) over an nf4 base."""
    if not lora_plain(proj):
        return False
    state = getattr(getattr(proj.base_layer, "weight", None), "quant_state", None)
    return type(state).__name__ == "QuantState" and getattr(state, "quant_type", "") == "nf4"


def _params(proj: Any) -> tuple[Any, ...]:
    """The P values of one projection; dropout's p only while its module trains."""
    name = proj.active_adapters[0]
    w = proj.base_layer.weight
    drop = proj.lora_dropout[name]
    p = float(drop.p) if isinstance(drop, torch.nn.Dropout) and drop.training else 0.0
    state = getattr(w, "quant_state", None)
    return (w, state, proj.lora_A[name].weight, proj.lora_B[name].weight, proj.scaling[name], p)


def _big(projs: tuple[Any, ...]) -> int:
    """How many of these projections' base products are large enough for FP8 (MIN_ELEMENTS): a group
    with none keeps unsloth's own function, which is faster than ours in bf16."""
    weights = (p.base_layer.weight for p in projs)
    return sum(n * k >= MIN_ELEMENTS[0] for n, k in (_dims(w, getattr(w, "quant_state", None)) for w in weights))


def install(model: Any, log: logging.Logger) -> Installed:
    """Swap unsloth's fused LoRA functions of every decoder layer for the FP8 ones where they apply."""
    done = Installed()
    try:
        from unsloth.kernels import fast_lora
        from unsloth.kernels.utils import fast_dequantize
    except ImportError as e:
        done.skip(f"unsloth's kernels do not import ({e})")
        return done

    def dequant(w: Any, state: Any) -> torch.Tensor:
        return fast_dequantize(w, state, use_global_buffer=True)

    # A weight dequantized only to learn its scales (the Triton cast never needs it again) goes to a
    # temporary: unsloth's shared buffer would otherwise grow to the largest weight and stay.
    setattr(dequant, "once", lambda w, state: fast_dequantize(w, state, use_global_buffer=False))  # noqa: B010

    BACKWARD[0] = os.environ.get("SIFT_FP8_BACKWARD", "1") != "0"
    FAST_BACKWARD[0] = os.environ.get("SIFT_FP8_FAST_BACKWARD", "0") == "1"
    TRITON[0] = os.environ.get("SIFT_FP8_TRITON", "1") != "0"

    acts = {
        getattr(fast_lora, "apply_lora_mlp_swiglu", None): ("swiglu_fg_kernel", "swiglu_DWf_DW_dfg_kernel"),
        getattr(fast_lora, "apply_lora_mlp_geglu_approx", None): (
            "geglu_approx_forward_kernel", "geglu_approx_backward_kernel"),
        getattr(fast_lora, "apply_lora_mlp_geglu_exact", None): (
            "geglu_exact_forward_kernel", "geglu_exact_backward_kernel"),
    }  # fmt: skip
    acts.pop(None, None)

    for module in model.modules():
        # Its own children only (peft's wrappers hand attribute reads down to the model they wrap).
        attn, mlp = module._modules.get("self_attn"), module._modules.get("mlp")
        if attn is None and mlp is None:
            continue
        took, skipped_before = False, sum(done.skipped.values())
        if attn is not None and getattr(attn, "apply_qkv", None) is getattr(fast_lora, "apply_lora_qkv", 0):
            projs = (attn.q_proj, attn.k_proj, attn.v_proj)
            if all(_plain(p) for p in projs):
                if big := _big(projs):
                    attn.apply_qkv = _qkv(dequant, fast_lora.apply_lora_qkv)
                    done.projections += big
                    took = True
                else:
                    done.skip("q/k/v: weights under MIN_ELEMENTS")
            else:
                done.skip("q/k/v: bias, DoRA, several adapters or a base that is not nf4")
        if attn is not None and getattr(attn, "apply_o", None) is getattr(fast_lora, "apply_lora_o", 0):
            if _plain(attn.o_proj):
                if _big((attn.o_proj,)):
                    attn.apply_o = _o(dequant, fast_lora.apply_lora_o)
                    done.projections += 1
                    took = True
                else:
                    done.skip("o: weight under MIN_ELEMENTS")
            else:
                done.skip("o: bias, DoRA, several adapters or a base that is not nf4")
        slot = "_unsloth_forward" if hasattr(mlp, "_unsloth_forward") else "forward"  # unsloth's TiledMLP
        fwd_fn = getattr(getattr(mlp, slot, None), "__func__", None)
        if mlp is not None and fwd_fn is not None:
            names = acts.get(fwd_fn) or acts.get(getattr(fwd_fn, "func", None))
            if names is not None and all(_plain(getattr(mlp, p)) for p in ("gate_proj", "up_proj", "down_proj")):
                kernels = fast_lora.__dict__.get(names[0]), fast_lora.__dict__.get(names[1])
                projs = tuple(getattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj"))
                if None in kernels:
                    done.skip(f"mlp: unsloth has no {names}")
                elif not (big := _big(projs)):
                    done.skip("mlp: weights under MIN_ELEMENTS")
                else:
                    setattr(mlp, slot, types.MethodType(_mlp(dequant, *kernels, fwd_fn), mlp))
                    done.projections += big
                    took = True
            elif names is not None:
                done.skip("mlp: bias, DoRA, several adapters or a base that is not nf4")
        if not took and sum(done.skipped.values()) == skipped_before:
            done.skip("a layer without unsloth's fused LoRA functions (its compiled path, e.g. Gemma 3)")
        done.layers += took
    log.info("fp8 base products: %d projections in %d layers; kept bf16: %s", done.projections, done.layers,
             done.skipped or "none")  # fmt: skip
    return done


def _qkv(dequant: Dequant, fallback: Callable[..., Any]) -> Callable[..., Any]:
    def apply_qkv(self: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if not self.training or not all(_plain(p) for p in projs):  # evaluation; a changed adapter
            return fallback(self, x)
        return LoraQKVFP8.apply(x, dequant, *(v for p in projs for v in _params(p)))

    return apply_qkv


def _o(dequant: Dequant, fallback: Callable[..., Any]) -> Callable[..., Any]:
    def apply_o(self: Any, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not _plain(self.o_proj):
            return fallback(self, x)
        w, state, a, b, s, p = _params(self.o_proj)
        return LoraLinearFP8.apply(x, w, state, a, b, s, dequant, p)

    return apply_o


def _mlp(
    dequant: Dequant, fwd: Callable[..., Any], bwd: Callable[..., Any], fallback: Callable[..., Any]
) -> Callable[..., Any]:
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        projs = (self.gate_proj, self.up_proj, self.down_proj)
        if not self.training or not all(_plain(p) for p in projs):
            return fallback(self, x)
        return LoraGatedMLPFP8.apply(x, dequant, fwd, bwd, *(v for p in projs for v in _params(p)))

    return forward
