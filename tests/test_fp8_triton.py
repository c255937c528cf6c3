"""The fused Triton casts of trainer/fp8_triton.py, bit for bit against the torch casts of trainer/fp8.py.

Where Triton imports (requirements.lock installs it on the CPU for this; the GPU image has its own)
the kernels run under Triton's CPU interpreter, writing fp32 that torch then casts (the interpreter's own float8
conversion is wrong); on a GPU with FP8 tensor cores they run compiled, writing e4m3, and the nf4
weight is a real bitsandbytes one. Every comparison is exact: the scales are powers of two, so both
paths round each value once, to e4m3's nearest even.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from trainer import fp8

HAS_TRITON = importlib.util.find_spec("triton") is not None
ROOT = Path(__file__).resolve().parents[1]

# bitsandbytes' NF4 code book (bitsandbytes.functional.get_4bit_type("nf4")).
NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]  # fmt: skip


def nf4_state(n: int, k: int, nested: bool, dev: str, bs: int = 64, bs2: int = 256) -> tuple[torch.Tensor, object]:
    """A packed nf4 weight and a QuantState-shaped namespace with random codes and scales."""
    g = torch.Generator().manual_seed(n * k + nested)
    nb = n * k // bs
    packed = torch.randint(0, 256, (n * k // 2, 1), dtype=torch.uint8, generator=g).to(dev)
    st = types.SimpleNamespace(shape=torch.Size([n, k]), blocksize=bs, quant_type="nf4", nested=nested,
                               code=torch.tensor(NF4, device=dev), dtype=torch.bfloat16)  # fmt: skip
    if nested:
        st.absmax = torch.randint(0, 256, (nb,), dtype=torch.uint8, generator=g).to(dev)
        st.state2 = types.SimpleNamespace(code=torch.linspace(-1, 1, 256, device=dev), blocksize=bs2,
                                          absmax=(torch.rand(-(-nb // bs2), generator=g) * 0.1).to(dev))  # fmt: skip
        st.offset = torch.tensor(0.03, device=dev)
    else:
        st.absmax = (torch.rand(nb, generator=g) * 0.1).to(dev)
        st.state2 = None
    return packed, st


def nf4_dequant(packed: torch.Tensor, st: object) -> torch.Tensor:
    """bitsandbytes' dequantization in torch: code[nibble] * absmax, high nibble first, in bf16."""
    n, k = st.shape  # type: ignore[attr-defined]
    b = packed.flatten().long()
    nib = torch.stack([b >> 4, b & 15], 1).flatten()
    if st.nested:  # type: ignore[attr-defined]
        s2 = st.state2  # type: ignore[attr-defined]
        idx = torch.arange(st.absmax.numel(), device=b.device) // s2.blocksize  # type: ignore[attr-defined]
        am = s2.code[st.absmax.long()] * s2.absmax[idx] + st.offset  # type: ignore[attr-defined]
    else:
        am = st.absmax  # type: ignore[attr-defined]
    return (st.code[nib] * am.repeat_interleave(st.blocksize)).to(torch.bfloat16).view(n, k)  # type: ignore[attr-defined]


def check_kernels(dev: str, out_dtype: torch.dtype) -> None:
    """Every fused cast against the torch path, exactly. Raises AssertionError on a difference."""
    from trainer import fp8_triton as ft

    as_e4m3 = (lambda t: t.to(fp8.E4M3)) if out_dtype != fp8.E4M3 else (lambda t: t)
    gen = torch.Generator().manual_seed(0)
    # Token rows: spread over 12 orders of magnitude, odd sizes, padding to 16.
    for m, k in ((37, 4096), (5, 300), (16, 2304)):
        x = (torch.randn(m, k, generator=gen) * torch.logspace(-6, 6, m)[:, None]).to(torch.bfloat16).to(dev)
        q, s = ft.quantize_rows(x, out_dtype=out_dtype)
        want_q, want_s = fp8.quantize_rows(x.cpu())
        assert q.shape == want_q.shape and torch.equal(s.cpu(), want_s), (m, k)
        assert torch.equal(as_e4m3(q).cpu().view(torch.uint8), want_q.view(torch.uint8)), (m, k)
    # nf4 straight to e4m3, both layouts, plain and double-quantized scales, a ragged last tile.
    for nested in (True, False):
        for n, k in ((48, 256), (130, 384)):
            packed, st = nf4_state(n, k, nested, dev)
            wd = nf4_dequant(packed, st).cpu()
            scales = fp8._scales(wd)
            # The default tile, and one the bench sweeps (NF4_TILE): fewer rows, a ragged wider column tile.
            for transposed, tile in ((False, None), (True, None), (False, (16, 256, 4)), (True, (16, 256, 4))):
                inv = (scales[5] if transposed else scales[4]).to(dev)
                got = ft.nf4_to_e4m3(packed, st, inv, transposed=transposed, out_dtype=out_dtype, tile=tile)
                want, _ = fp8.quantize_weight(wd, transposed=transposed)
                assert got.shape == want.shape and got.stride() == want.stride(), (got.stride(), want.stride())
                assert torch.equal(as_e4m3(got).cpu().view(torch.uint8), want.view(torch.uint8)), (nested, n, k, tile)


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed (the CPU build of torch has none)")
def test_fused_casts_match_the_torch_casts_under_the_interpreter() -> None:
    """The kernels' index arithmetic, rounding and layouts, on the CPU through Triton's interpreter
    (it is read when a kernel is defined: a fresh process)."""
    code = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]; import torch; " \
        "import test_fp8_triton as t; t.check_kernels('cpu', torch.float32); print('ok')"  # fmt: skip
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


needs_gpu = pytest.mark.skipif(not (HAS_TRITON and fp8.fp8_supported()), reason="needs a GPU with FP8 tensor cores")


@needs_gpu
def test_fused_casts_match_the_torch_casts_on_the_gpu() -> None:
    check_kernels("cuda", fp8.E4M3)


@needs_gpu
@pytest.mark.parametrize("nested", [True, False])
def test_a_real_bitsandbytes_weight_through_the_fused_path(nested: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A weight quantized by bitsandbytes itself: the products through the fused casts equal the ones
    through bitsandbytes' dequantization and torch's casts, bit for bit."""
    import bitsandbytes.functional as bnbf

    from trainer import fp8_triton as ft

    monkeypatch.setattr(fp8, "MIN_ELEMENTS", [0])
    torch.manual_seed(1)
    w = (torch.randn(384, 512, device="cuda") / 20).to(torch.bfloat16)
    packed, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=nested)
    assert ft.nf4_supported(st)

    def dequant(p: torch.Tensor, s: object) -> torch.Tensor:
        return bnbf.dequantize_4bit(p, s)

    wd = dequant(packed, st)
    scales = fp8._scales(wd)
    for transposed in (False, True):
        got = ft.nf4_to_e4m3(packed, st, scales[5] if transposed else scales[4], transposed=transposed)
        want, _ = fp8.quantize_weight(wd, transposed=transposed)
        assert torch.equal(got.view(torch.uint8), want.view(torch.uint8)), transposed
    x = torch.randn(100, 512, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(100, 384, device="cuda", dtype=torch.bfloat16)
    monkeypatch.setattr(fp8, "TRITON", [False])
    want_y = fp8.base_forward(x, packed, st, dequant)  # torch casts; learns the weight's scales
    want_dx = fp8.base_backward(dy, packed, st, dequant)
    monkeypatch.setattr(fp8, "TRITON", [True])
    assert torch.equal(fp8.base_forward(x, packed, st, dequant), want_y)
    assert torch.equal(fp8.base_backward(dy, packed, st, dequant), want_dx)
    ref = x.float() @ wd.float().t()
    assert float((want_y.float() - ref).norm() / ref.norm()) < 0.06
