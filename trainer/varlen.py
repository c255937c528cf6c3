"""Packed attention in one flash call per layer for the unsloth backend (`packed_attention`).

Sift packs several conversations into each row, and each must attend only to itself. unsloth 2026.10
does this with torch's `varlen_attn` (one flash-attention call over the packed row, cut at
`cu_seqlens`) only where that function takes `enable_gqa` (torch 2.12 on); on torch 2.11, the GPU
image's, its Llama path falls back to one SDPA call per conversation, which on H100/H200 is cuDNN's
attention: a new cuDNN plan and 0.3-0.9 ms of host time per call (BENCHMARKS.md, "The host bounds
the FP8 step"), and its Gemma path repeats the K/V heads for `varlen_attn` to take them.

The kernel `varlen_attn` runs is aten's flash varlen forward and backward, which take grouped K/V
heads as they are (the `enable_gqa` of torch 2.12 only checks the head counts). `varlen_attn` here
calls those two ops through a plain autograd Function and `install` hands it to unsloth's dispatch
where unsloth has none with GQA. Same kernel, same sample boundaries: a conversation's queries see
only its own keys, causally, exactly as the per-conversation calls did.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch


class PackedAttentionError(RuntimeError):
    pass


class _FlashVarlen(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, max_q: int, max_k: int,
                causal: bool, scale: float | None, left: int, right: int) -> Any:  # fmt: skip
        out, lse, rng, unused, _ = torch.ops.aten._flash_attention_forward(
            q,
            k,
            v,
            cu_q,
            cu_k,
            max_q,
            max_k,
            0.0,
            causal,
            return_debug_mask=False,
            scale=scale,
            window_size_left=left,
            window_size_right=right,
        )
        ctx.save_for_backward(q, k, v, cu_q, cu_k, out, lse, rng, unused)
        ctx.args = (max_q, max_k, causal, scale, left, right)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Any) -> Any:
        q, k, v, cu_q, cu_k, out, lse, rng, unused = ctx.saved_tensors
        max_q, max_k, causal, scale, left, right = ctx.args
        dq, dk, dv = torch.ops.aten._flash_attention_backward(
            grad.contiguous(),
            q,
            k,
            v,
            out,
            lse,
            cu_q,
            cu_k,
            max_q,
            max_k,
            0.0,
            causal,
            rng,
            unused,
            scale=scale,
            window_size_left=left,
            window_size_right=right,
        )
        return dq, dk, dv, None, None, None, None, None, None, None, None


def varlen_attn(
    query: Any,
    key: Any,
    value: Any,
    cu_seq_q: Any,
    cu_seq_k: Any,
    max_q: int,
    max_k: int,
    *,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
    enable_gqa: bool = False,
    **unused: Any,
) -> Any:
    """torch 2.12's `varlen_attn` as unsloth calls it: query (T, H, D), key/value (T, H_kv, D), int32
    cumulative lengths; window_size (-1, 0) is causal, (W - 1, 0) causal over the last W keys."""
    if unused.get("return_aux") is not None or unused.get("block_table") is not None:
        raise PackedAttentionError("Sift's varlen attention takes no return_aux or block_table")
    hq, hk = query.shape[1], key.shape[1]
    if hq != hk and (not enable_gqa or hq % hk):
        raise PackedAttentionError(f"{hq} query heads over {hk} key/value heads needs enable_gqa and a multiple")
    left, right = (int(window_size[0]), int(window_size[1]))
    causal = (left, right) == (-1, 0)
    return _FlashVarlen.apply(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, causal, scale, left, right)


def install(mode: str, log: logging.Logger) -> str:
    """Give unsloth's packed-row dispatch `varlen_attn` where its own lacks GQA (torch before 2.12);
    returns what the run folder's `attention` records. `segments` leaves unsloth as it is; `varlen`
    fails where it cannot be used; `auto` logs why and leaves unsloth as it is."""
    if mode == "segments":
        return "sdpa, one call per packed conversation (unsloth's)"

    def refuse(reason: str) -> str:
        if mode == "varlen":
            raise PackedAttentionError(f"packed_attention 'varlen': {reason}; use 'auto' or 'segments'")
        log.info("packed_attention auto: %s; unsloth's own packed attention", reason)
        return ""

    if not torch.cuda.is_available():
        return refuse("needs CUDA")
    if not getattr(torch.backends.cuda, "is_flash_attention_available", lambda: False)():
        return refuse("this torch has no flash attention kernel")
    if torch.cuda.get_device_capability()[0] < 8:
        return refuse("flash attention needs an Ampere or newer GPU")
    try:
        from unsloth.utils import attention_dispatch as dispatch
        from unsloth.utils import hf_packed_attention as hf_packed
    except ImportError as e:
        return refuse(f"this unsloth has no packed-attention dispatch to give it to ({e})")
    needed = ("_TORCH_VARLEN_ATTN", "_LEAN_VARLEN", "_torch_varlen_packed")
    if not all(hasattr(dispatch, n) for n in needed) or not hasattr(hf_packed, "_TORCH_VARLEN_GQA"):
        return refuse("this unsloth's packed-attention dispatch is not the one Sift knows (2026.10)")
    if os.environ.get("UNSLOTH_TORCH_VARLEN", "1").lower() in ("0", "false", "no", "off"):
        return refuse("UNSLOTH_TORCH_VARLEN is off in this environment")
    hf_packed._torch_varlen(torch.device("cuda", torch.cuda.current_device()))  # fills its cache
    llama = dispatch._TORCH_VARLEN_ATTN is None
    hf = not hf_packed._TORCH_VARLEN or hf_packed._TORCH_VARLEN[0] is None or not hf_packed._TORCH_VARLEN_GQA[0]
    if not llama and not hf:
        return "flash varlen (unsloth's own, one call per layer)"
    if llama:
        dispatch._TORCH_VARLEN_ATTN = varlen_attn
        dispatch._LEAN_VARLEN = False  # its lean path asks torch 2.12's cuDNN question first
    if hf:
        hf_packed._TORCH_VARLEN[:] = [varlen_attn]
        hf_packed._TORCH_VARLEN_GQA[:] = [True]
    log.info("packed attention: one flash varlen call per layer over each packed row (Sift's, grouped K/V)")
    return "flash varlen (Sift's, one call per layer)"
