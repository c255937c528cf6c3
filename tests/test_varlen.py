"""Packed attention in one flash varlen call per layer (trainer/varlen.py, `packed_attention`).

On the CPU: the config field, and that `auto` leaves unsloth alone and `varlen` refuses with a clear
error where there is no flash kernel. On CUDA (the device run, scripts/gpu_bench.sh): the kernel
against a float32 reference computed conversation by conversation (causal, grouped K/V heads, a
sliding window, a pad tail), forward and gradients; and, where unsloth imports, its packed-row
dispatch with Sift's function installed against its own per-conversation SDPA path.
"""

from __future__ import annotations

import logging

import pytest
import torch

from trainer import varlen
from trainer.config import ConfigError, TrainConfig

LOG = logging.getLogger("test")
CUDA = torch.cuda.is_available()
LENGTHS = [5, 300, 77, 1, 130, 130, 41]  # equal neighbours, a one-token conversation


def test_config_field_and_refusals_without_a_flash_kernel(caplog: pytest.LogCaptureFixture) -> None:
    assert TrainConfig().packed_attention in ("auto", "varlen", "segments")
    with pytest.raises(ConfigError, match="packed_attention"):
        TrainConfig(packed_attention="flash").validate()
    assert varlen.install("segments", LOG).startswith("sdpa, one call per packed conversation")
    if CUDA:
        pytest.skip("the refusals are for machines without CUDA")
    with caplog.at_level(logging.INFO):
        assert varlen.install("auto", LOG) == ""
    assert "needs CUDA" in caplog.text
    with pytest.raises(varlen.PackedAttentionError, match="packed_attention 'varlen': needs CUDA"):
        varlen.install("varlen", LOG)


def test_the_run_records_the_packed_dispatch_only_where_the_model_reaches_it() -> None:
    from trainer.backends import unsloth_attention

    label = "flash varlen (Sift's, one call per layer)"
    assert unsloth_attention(label, "sdpa") == label
    assert unsloth_attention(label, "flex_attention") == "flex_attention"  # Gemma 3 under unsloth
    assert unsloth_attention("", "sdpa") == "sdpa"  # auto refused: unsloth's own


def test_a_named_attention_that_unsloth_overrides_is_warned_about() -> None:
    from trainer.backends import attention_override_note

    # Gemma 3 under unsloth with sdpa named: unsloth runs eager (BENCHMARKS.md, 0.43x its flex_attention)
    note = attention_override_note("sdpa", "eager")
    assert "'sdpa' was named" in note and "on 'eager'" in note and "'auto'" in note
    assert attention_override_note("sdpa", "sdpa") == ""
    assert attention_override_note("auto", "flex_attention") == ""  # unsloth's own choice: nothing to warn
    assert attention_override_note("flex_attention", "") == ""  # nothing recorded: nothing to compare


def test_heads_that_do_not_group_are_refused() -> None:
    q, k = torch.zeros(4, 6, 8), torch.zeros(4, 4, 8)
    cu = torch.tensor([0, 4], dtype=torch.int32)
    with pytest.raises(varlen.PackedAttentionError, match="6 query heads over 4"):
        varlen.varlen_attn(q, k, k, cu, cu, 4, 4, enable_gqa=True)
    with pytest.raises(varlen.PackedAttentionError, match="enable_gqa"):
        varlen.varlen_attn(q, torch.zeros(4, 2, 8), torch.zeros(4, 2, 8), cu, cu, 4, 4)


def _reference(q, k, v, lengths, window):  # type: ignore[no-untyped-def]
    """float32, one conversation at a time: causal (and within `window` keys) over its own tokens."""
    outs, start = [], 0
    groups = q.shape[1] // k.shape[1]
    for n in lengths:
        qs, ks, vs = (t[start : start + n].float().transpose(0, 1) for t in (q, k, v))
        ks, vs = ks.repeat_interleave(groups, 0), vs.repeat_interleave(groups, 0)
        i = torch.arange(n, device=q.device)
        keep = i[None, :] <= i[:, None]
        if window is not None:
            keep &= i[None, :] > i[:, None] - window
        scores = (qs @ ks.transpose(1, 2)) * q.shape[-1] ** -0.5
        outs.append(torch.softmax(scores.masked_fill(~keep, float("-inf")), -1) @ vs)
        start += n
    return torch.cat([o.transpose(0, 1) for o in outs])


@pytest.mark.skipif(not CUDA, reason="flash attention runs on CUDA")
@pytest.mark.parametrize(("heads", "kv_heads", "window"), [(8, 8, None), (8, 2, None), (4, 1, 64)])
def test_matches_attention_per_conversation_forward_and_backward(heads: int, kv_heads: int, window: int | None) -> None:
    torch.manual_seed(0)
    total, dim = sum(LENGTHS), 64
    q = torch.randn(total, heads, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(total, kv_heads, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(total, kv_heads, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    out = varlen.varlen_attn(
        q, k, v, cu, cu, max(LENGTHS), max(LENGTHS),
        window_size=(-1, 0) if window is None else (window - 1, 0), enable_gqa=kv_heads != heads,
    )  # fmt: skip
    leaves = (q, k, v)
    ref_leaves = tuple(t.detach().float().requires_grad_() for t in leaves)
    ref = _reference(*ref_leaves, LENGTHS, window)
    assert (out.float() - ref).abs().max().item() < 2e-2
    grad = torch.randn_like(ref)
    out.backward(grad.to(out.dtype))
    ref.backward(grad)
    for mine, theirs in zip(leaves, ref_leaves, strict=True):
        assert mine.grad is not None and theirs.grad is not None
        err = (mine.grad.float() - theirs.grad).abs().max().item()
        assert err < 3e-2 * max(1.0, theirs.grad.abs().max().item()), err


@pytest.mark.skipif(not CUDA, reason="flash attention runs on CUDA")
def test_unsloth_dispatch_with_it_installed_matches_its_own_per_conversation_path() -> None:
    pytest.importorskip("unsloth")
    from unsloth.utils import attention_dispatch as dispatch

    label = varlen.install("auto", LOG)
    assert label.startswith("flash varlen")
    assert dispatch._TORCH_VARLEN_ATTN is not None
    torch.manual_seed(1)
    heads, kv_heads, dim = 8, 2, 64
    total = sum(LENGTHS) + 9  # a pad tail past the last conversation, as trl pads a packed row
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    lengths = torch.tensor(LENGTHS, dtype=torch.int32, device="cuda")
    cu = torch.cat([lengths.new_zeros(1), lengths.cumsum(0, dtype=torch.int32)])
    seq_info = (lengths, cu, max(LENGTHS))
    common = {"n_groups": heads // kv_heads, "is_causal": True, "sliding_window": None}
    mine = dispatch._torch_varlen_packed(q, k, v, seq_info, scale=None, **common)
    theirs = dispatch._sdpa_packed_segments(q, k, v, (*LENGTHS, 9), sdpa_kwargs={}, training=True, **common)
    assert mine.shape == theirs.shape == (1, total, heads, dim)
    assert (mine.float() - theirs.float()).abs().max().item() < 2e-2
    g = torch.randn_like(mine)
    (ga,) = torch.autograd.grad(mine, q, g)
    (gb,) = torch.autograd.grad(theirs, q, g)
    assert (ga.float() - gb.float()).abs().max().item() < 3e-2 * max(1.0, gb.abs().max().item())
