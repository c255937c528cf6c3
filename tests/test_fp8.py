"""The FP8 base products of trainer/fp8.py, checked on the CPU against fp32 references.

On the CPU `scaled_mm` multiplies the same e4m3 operands and scales the GPU kernel receives, in
fp32: these tests pin the scales (one power of two per row or column), the operand layouts, the
padding to multiples of 16 and the gradients of the three autograd functions. The GPU kernel itself
runs in bench/bench_train.py (`fp8_check` in its JSON: the same functions on the device against
bf16).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch

from trainer import fp8

torch.manual_seed(0)


DEVICES = ["cpu", *(["cuda"] if fp8.fp8_supported() else [])]


@pytest.fixture(params=DEVICES)
def dev(request: pytest.FixtureRequest) -> Iterator[str]:
    """The numeric tests run on the CPU (the same operands multiplied in fp32) and, on a machine
    with FP8 tensor cores, on the GPU through torch's FP8 kernel with the same tolerances."""
    torch.set_default_device(request.param)
    yield request.param
    torch.set_default_device("cpu")


@pytest.fixture(autouse=True)
def every_product_in_fp8(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' weights are small: take them through FP8 whatever their size."""
    monkeypatch.setattr(fp8, "MIN_ELEMENTS", [0])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


@pytest.mark.usefixtures("dev")
def test_rows_keep_their_own_scale_and_round_to_three_mantissa_bits() -> None:
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    x[1] *= 1e-4  # a row 10^4 times smaller keeps its relative precision: one scale per row
    x[2] *= 300.0
    x[3] = 0  # an all-zero row stays zero, with a finite scale
    q, s = fp8.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and q.shape == (16, 64) and s.shape == (16, 1)
    assert torch.all(torch.log2(s) == torch.round(torch.log2(s))), "scales are powers of two"
    back = q[:5].float() * s[:5]
    for i in (0, 1, 2, 4):
        assert (back[i] - x[i].float()).abs().max() <= x[i].float().abs().max() / 16 + 1e-30
        assert rel(back[i], x[i]) < 0.05
    assert torch.all(back[3] == 0) and torch.isfinite(s).all()
    assert torch.all(q[5:].float() == 0), "padding rows are zero"
    assert q.float().abs().max() <= fp8.E4M3_MAX


@pytest.mark.usefixtures("dev")
def test_weight_operands_are_column_major_with_the_scale_of_each_output() -> None:
    w = torch.randn(48, 32, dtype=torch.bfloat16)
    w[7] *= 50.0  # one large output row (forward) and, transposed, one large input column (backward)
    w[:, 3] *= 1e-3
    b, s = fp8.quantize_weight(w, transposed=False)  # X @ w.T: b = w.T (32, 48), a scale per row of w
    assert b.shape == (32, 48) and s.shape == (1, 48) and b.stride() == (1, 32)
    assert rel(b.float() * s, w.t()) < 0.05
    b, s = fp8.quantize_weight(w, transposed=True)  # dY @ w: b = w (48, 32), a scale per column of w
    assert b.shape == (48, 32) and s.shape == (1, 32) and b.stride() == (1, 48)
    assert rel(b.float() * s, w) < 0.05
    assert rel((b.float() * s)[:, 3], w[:, 3]) < 0.05, "a small input column keeps its own scale"


@pytest.mark.usefixtures("dev")
def test_base_products_match_fp32_and_odd_shapes_stay_bf16() -> None:
    x = torch.randn(37, 64, dtype=torch.bfloat16)  # 37 rows: padded to 48 for the kernel
    w = torch.randn(96, 64, dtype=torch.bfloat16)
    y = fp8.base_forward(x, w)
    assert y.shape == (37, 96) and y.dtype == torch.bfloat16
    assert 0 < rel(y, x.float() @ w.float().t()) < 0.06
    dy = torch.randn(37, 96, dtype=torch.bfloat16)
    dx = fp8.base_backward(dy, w)
    assert dx.shape == (37, 64) and 0 < rel(dx, dy.float() @ w.float()) < 0.06
    w_odd = torch.randn(90, 64, dtype=torch.bfloat16)  # 90 outputs: not a multiple of 16
    assert torch.equal(fp8.base_forward(x, w_odd), x @ w_odd.t())


def _lora_params(n_out: int, n_in: int, r: int = 8) -> tuple[torch.Tensor, ...]:
    w = torch.randn(n_out, n_in, dtype=torch.bfloat16) / n_in**0.5
    a = (torch.randn(r, n_in) / n_in**0.5).to(torch.bfloat16).requires_grad_()
    b = (torch.randn(n_out, r) / r**0.5).to(torch.bfloat16).requires_grad_()
    return w, a, b


def _ref_linear(x: torch.Tensor, w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, s: float) -> torch.Tensor:
    return x @ w.t() + s * (x @ a.t()) @ b.t()


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), device="cpu").to(out.device, out.dtype)
    return list(torch.autograd.grad(out, inputs, g))


@pytest.mark.usefixtures("dev")
def test_lora_linear_forward_and_gradients() -> None:
    x = torch.randn(2, 40, 64, dtype=torch.bfloat16, requires_grad=True)
    w, a, b = _lora_params(128, 64)
    s = 2.0
    y = fp8.LoraLinearFP8.apply(x, w, None, a, b, s, fp8._identity)
    got = _grads(y, [x, a, b])
    xf, af, bf = (t.detach().float().requires_grad_() for t in (x, a, b))
    ref = _ref_linear(xf, w.float(), af, bf, s)
    want = _grads(ref, [xf, af, bf])
    assert y.shape == (2, 40, 128)
    assert rel(y, ref) < 0.06
    assert rel(got[0], want[0]) < 0.06  # dx goes through the FP8 backward product
    # The LoRA gradients read x and dy in bf16: no FP8 rounding in them.
    assert rel(got[1], want[1]) < 0.02 and rel(got[2], want[2]) < 0.02
    # A wrong scale or transpose would be off by far more than rounding: check the check.
    assert rel(y * 2, ref) > 0.5


@pytest.mark.usefixtures("dev")
def test_qkv_matches_three_lora_linears() -> None:
    x = torch.randn(1, 48, 64, dtype=torch.bfloat16, requires_grad=True)
    ps = [_lora_params(n, 64) for n in (64, 32, 32)]
    params = [v for (w, a, b) in ps for v in (w, None, a, b, 2.0, 0.0)]
    q, k, v = fp8.LoraQKVFP8.apply(x, fp8._identity, *params)
    out = torch.cat([q, k, v], -1)
    leaves = [x] + [t for (_, a, b) in ps for t in (a, b)]
    got = _grads(out, leaves)
    xf = x.detach().float().requires_grad_()
    fl = [(w.float(), a.detach().float().requires_grad_(), b.detach().float().requires_grad_()) for w, a, b in ps]
    ref = torch.cat([_ref_linear(xf, w, a, b, 2.0) for w, a, b in fl], -1)
    want = _grads(ref, [xf] + [t for (_, a, b) in fl for t in (a, b)])
    assert rel(out, ref) < 0.06 and rel(got[0], want[0]) < 0.06
    for g, wnt in zip(got[1:], want[1:], strict=True):
        assert rel(g, wnt) < 0.02


@pytest.mark.usefixtures("dev")
def test_gated_mlp_matches_its_reference_and_saves_what_unsloth_saves() -> None:
    x = torch.randn(1, 32, 64, dtype=torch.bfloat16, requires_grad=True)
    (gw, ga, gb), (uw, ua, ub), (dw, da, db) = _lora_params(160, 64), _lora_params(160, 64), _lora_params(64, 160)
    params = [gw, None, ga, gb, 2.0, 0.0, uw, None, ua, ub, 2.0, 0.0, dw, None, da, db, 2.0, 0.0]
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fp8.LoraGatedMLPFP8.apply(x, fp8._identity, fp8.swiglu_forward, fp8.swiglu_backward, *params)
    # x, e and g (and the six LoRA matrices); h is recomputed in the backward pass, as unsloth does.
    assert sorted(saved, reverse=True)[:3] == [32 * 160, 32 * 160, 32 * 64]
    leaves = [x, ga, gb, ua, ub, da, db]
    got = _grads(y, leaves)
    f = [t.detach().float().requires_grad_() for t in leaves]
    xf, gaf, gbf, uaf, ubf, daf, dbf = f
    h = torch.nn.functional.silu(_ref_linear(xf, gw.float(), gaf, gbf, 2.0)) * _ref_linear(
        xf, uw.float(), uaf, ubf, 2.0
    )
    ref = _ref_linear(h, dw.float(), daf, dbf, 2.0)
    want = _grads(ref, f)
    assert rel(y, ref) < 0.08
    assert rel(got[0], want[0]) < 0.08
    for g, wnt in zip(got[1:], want[1:], strict=True):
        assert rel(g, wnt) < 0.08  # the LoRA gradients of gate/up read df/de, which went through FP8 above


def test_gated_mlp_backward_makes_no_rows_by_intermediate_product_it_drops() -> None:
    """The MLP's backward forms one (rows, intermediate) LoRA product for the down projection's input
    gradient (into dh, in place) and none besides: the 8B profile's memory peak held two such
    temporaries, computed for that gradient a second time and thrown away (H200, 436 MiB)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    rows, hidden, inter = 32, 64, 160
    x = torch.randn(1, rows, hidden, dtype=torch.bfloat16, requires_grad=True)
    (gw, ga, gb), (uw, ua, ub) = _lora_params(inter, hidden), _lora_params(inter, hidden)
    dw, da, db = _lora_params(hidden, inter)
    params = [gw, None, ga, gb, 2.0, 0.0, uw, None, ua, ub, 2.0, 0.0, dw, None, da, db, 2.0, 0.0]
    y = fp8.LoraGatedMLPFP8.apply(x, fp8._identity, fp8.swiglu_forward, fp8.swiglu_backward, *params)
    seen: list[tuple[str, tuple[int, ...]]] = []

    class Products(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            if func.__name__.split(".")[0] in ("mm", "addmm", "addmm_") and isinstance(out, torch.Tensor):
                seen.append((func.__name__.split(".")[0], tuple(out.shape)))
            return out

    with Products():
        y.backward(torch.randn_like(y))
    lora_down_dx = [name for name, shape in seen if shape == (rows, inter) and name != "mm"]
    assert lora_down_dx == ["addmm_"], seen  # dy B A_down added into dh by the product itself
    assert seen.count(("mm", (rows, inter))) == 1, seen  # the base product dy @ W_down (identity dequant)
    assert da.grad is not None and db.grad is not None and x.grad is not None


def test_gated_mlp_with_lora_dropout_matches_a_reference_with_the_same_masks() -> None:
    """The MLP's backward adds the down LoRA's part into dh through the dropout mask of h (and
    reuses dy B for the down LoRA's own gradients)."""
    x = torch.randn(32, 64, dtype=torch.bfloat16, requires_grad=True)
    (gw, ga, gb), (uw, ua, ub), (dw, da, db) = _lora_params(160, 64), _lora_params(160, 64), _lora_params(64, 160)
    with torch.no_grad():
        for b in (gb, ub, db):
            b.normal_()
    p = 0.5
    params = [gw, None, ga, gb, 2.0, p, uw, None, ua, ub, 2.0, p, dw, None, da, db, 2.0, p]
    torch.manual_seed(11)
    y = fp8.LoraGatedMLPFP8.apply(x, fp8._identity, fp8.swiglu_forward, fp8.swiglu_backward, *params)
    leaves = [x, ga, gb, ua, ub, da, db]
    got = _grads(y, leaves)
    torch.manual_seed(11)  # the masks in the order the forward draws them: gate's, up's, then h's
    k_g, k_u = (torch.empty(32, 64, dtype=torch.bool).bernoulli_(1 - p) for _ in range(2))
    k_d = torch.empty(32, 160, dtype=torch.bool).bernoulli_(1 - p)
    xf, gaf, gbf, uaf, ubf, daf, dbf = f = [t.detach().float().requires_grad_() for t in leaves]

    def lin(inp: torch.Tensor, w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return inp @ w.float().t() + 2.0 * ((inp * keep / (1 - p)) @ a.t()) @ b.t()

    h = torch.nn.functional.silu(lin(xf, gw, gaf, gbf, k_g)) * lin(xf, uw, uaf, ubf, k_u)
    ref = lin(h, dw, daf, dbf, k_d)
    want = _grads(ref, f)
    assert rel(y, ref) < 0.08
    for g, wnt in zip(got, want, strict=True):
        assert rel(g, wnt) < 0.08


def test_install_without_unsloth_changes_nothing_and_says_why() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    done = fp8.install(model, logging.getLogger("test"))
    assert done.projections == 0 and done.label == "bf16"
    assert any("unsloth" in why for why in done.skipped) or done.skipped == {}


@pytest.mark.skipif(fp8.fp8_supported(), reason="this machine has FP8 tensor cores")
def test_fp8_is_not_claimed_without_an_fp8_gpu() -> None:
    assert not fp8.fp8_supported()


def test_fp8_matmul_config_and_a_clear_error_where_it_cannot_run(tmp_path) -> None:
    from trainer.backends import BackendError, load
    from trainer.config import ConfigError, TrainConfig

    assert TrainConfig().fp8_matmul in ("off", "auto")
    with pytest.raises(ConfigError, match="fp8_matmul"):
        TrainConfig(fp8_matmul="yes").validate()
    if fp8.fp8_supported():
        pytest.skip("this machine has FP8 tensor cores")
    # 'on' where it cannot run fails before any model loads, and says why; auto trains as before.
    with pytest.raises(BackendError, match="fp8_matmul 'on'"):
        load(TrainConfig(fp8_matmul="on", base_model=str(tmp_path / "absent")), str(tmp_path / "absent"),
             logging.getLogger("test"))  # fmt: skip


def test_auto_uses_fp8_only_on_the_gpus_it_was_measured_faster_on(monkeypatch, caplog) -> None:
    """`fp8_matmul: auto` (the default) installs FP8 on sm_90 only; an unmeasured FP8 GPU (Ada, Blackwell)
    keeps bf16 and says so, while `on` still installs there. No such GPU is here, so the capability is
    patched (the decision is what is tested, not the GPU)."""
    from trainer.backends import fp8_base_products
    from trainer.config import TrainConfig

    assert fp8.auto_takes((9, 0))
    assert not any(fp8.auto_takes(c) for c in ((8, 9), (10, 0), (12, 0), (8, 0)))
    installed: list[object] = []
    monkeypatch.setattr(fp8, "fp8_supported", lambda device=None: True)
    monkeypatch.setattr(fp8, "install", lambda model, log: installed.append(model) or fp8.Installed(projections=3))
    log = logging.getLogger("test-fp8-auto")
    for capability, mode, expect in (((8, 9), "auto", "bf16"), ((12, 0), "auto", "bf16"),
                                     ((9, 0), "auto", "fp8"), ((8, 9), "on", "fp8")):  # fmt: skip
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        installed.clear()
        with caplog.at_level(logging.INFO, logger="test-fp8-auto"):
            label = fp8_base_products(TrainConfig(fp8_matmul=mode), "model", log)
        assert label.startswith(expect), (capability, mode, label)
        assert installed == (["model"] if expect == "fp8" else [])
    assert "this GPU (sm_89) keeps the base products in bf16" in caplog.text
    assert TrainConfig().fp8_matmul == "auto"


@pytest.mark.usefixtures("dev")
def test_small_products_stay_bf16_and_a_frozen_weight_keeps_its_first_scales(monkeypatch) -> None:
    x = torch.randn(32, 64, dtype=torch.bfloat16)
    w = torch.randn(96, 64, dtype=torch.bfloat16)
    monkeypatch.setattr(fp8, "MIN_ELEMENTS", [96 * 64 + 1])
    assert torch.equal(fp8.base_forward(x, w), x @ w.t()) and torch.equal(
        fp8.base_backward(x @ w.t(), w), (x @ w.t()) @ w
    )
    monkeypatch.setattr(fp8, "MIN_ELEMENTS", [0])
    key = torch.empty(0)  # stands for the packed weight w is dequantized from
    first = fp8.weight_scales(w, key)
    assert all(a is b for a, b in zip(fp8.weight_scales(w * 4, key), first, strict=True)), (
        "computed once per frozen weight"
    )
    assert not torch.equal(fp8.weight_scales(w * 4, torch.empty(0))[1], first[1])


def test_only_plain_lora_projections_are_taken() -> None:
    from peft import LoraConfig, get_peft_model

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = torch.nn.Linear(32, 32, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.q_proj(x)

    plain = get_peft_model(Tiny(), LoraConfig(r=4, lora_dropout=0.0, target_modules=["q_proj"]))
    dropped = get_peft_model(Tiny(), LoraConfig(r=4, lora_dropout=0.05, target_modules=["q_proj"]))
    dora = get_peft_model(Tiny(), LoraConfig(r=4, use_dora=True, target_modules=["q_proj"]))
    assert fp8.lora_plain(plain.base_model.model.q_proj) and fp8.lora_plain(dropped.base_model.model.q_proj)
    assert not fp8.lora_plain(dora.base_model.model.q_proj)
    q = dropped.base_model.model.q_proj
    assert fp8._params(q)[-1] == 0.05, "dropout while training"
    dropped.eval()
    assert fp8._params(q)[-1] == 0.0, "none in eval"
    assert not fp8._plain(plain.base_model.model.q_proj), "a bf16 base is not nf4: unsloth's path keeps it"


@pytest.mark.usefixtures("dev")
def test_lora_dropout_drops_the_lora_path_only_with_one_saved_mask() -> None:
    x = torch.randn(40, 64, dtype=torch.bfloat16, requires_grad=True)
    w, a, b = _lora_params(128, 64)
    with torch.no_grad():
        b.normal_()  # lora_B is not zero here, so dA is not zero either
    s, p = 2.0, 0.5
    torch.manual_seed(7)
    y = fp8.LoraLinearFP8.apply(x, w, None, a, b, s, fp8._identity, p)
    got = _grads(y, [x, a, b])
    torch.manual_seed(7)  # the same mask, drawn the same way
    keep = torch.empty(x.shape, dtype=torch.bool).bernoulli_(1 - p)
    assert 0.4 < keep.float().mean() < 0.6
    xf, af, bf = (t.detach().float().requires_grad_() for t in (x, a, b))
    ref = xf @ w.float().t() + s * ((xf * keep / (1 - p)) @ af.t()) @ bf.t()
    want = _grads(ref, [xf, af, bf])
    assert rel(y, ref) < 0.06 and rel(got[0], want[0]) < 0.06
    assert rel(got[1], want[1]) < 0.02 and rel(got[2], want[2]) < 0.02
    no_drop = xf @ w.float().t() + s * (xf @ af.t()) @ bf.t()
    assert rel(y, no_drop) > 0.1, "the mask did change the LoRA path"


def test_install_swaps_unsloths_fused_functions_and_trains_through_them(monkeypatch) -> None:
    """install()'s wiring on a decoder layer shaped as unsloth leaves it. unsloth cannot import on
    this CPU, so a stand-in module provides only the names install() looks up: the fused functions
    (here peft's own forward, the reference), unsloth's activation kernels (the torch ones above,
    under unsloth's shape contracts) and fast_dequantize (a bf16 base: nothing to dequantize).
    Both bugs the first GPU runs hit are in this path."""
    import sys
    import types

    from peft import LoraConfig, get_peft_model

    def apply_lora_qkv(self, x):
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def apply_lora_o(self, x):
        return self.o_proj(x)

    def apply_lora_mlp_swiglu(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    fast_lora = types.ModuleType("unsloth.kernels.fast_lora")
    fast_lora.__dict__.update(
        apply_lora_qkv=apply_lora_qkv,
        apply_lora_o=apply_lora_o,
        apply_lora_mlp_swiglu=apply_lora_mlp_swiglu,
        swiglu_fg_kernel=fp8.swiglu_forward,
        swiglu_DWf_DW_dfg_kernel=fp8.swiglu_backward,
    )
    utils = types.ModuleType("unsloth.kernels.utils")
    utils.fast_dequantize = lambda w, state, **kw: w  # type: ignore[attr-defined]
    kernels = types.ModuleType("unsloth.kernels")
    kernels.fast_lora, kernels.utils = fast_lora, utils  # type: ignore[attr-defined]
    for name, mod in (("unsloth", types.ModuleType("unsloth")), ("unsloth.kernels", kernels),
                      ("unsloth.kernels.fast_lora", fast_lora), ("unsloth.kernels.utils", utils)):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(fp8, "_plain", fp8.lora_plain)  # the base here is bf16, not nf4

    class Attn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.k_proj = torch.nn.Linear(64, 64, bias=False), torch.nn.Linear(64, 32, bias=False)
            self.v_proj, self.o_proj = torch.nn.Linear(64, 32, bias=False), torch.nn.Linear(64, 64, bias=False)

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate_proj, self.up_proj = torch.nn.Linear(64, 160, bias=False), torch.nn.Linear(64, 160, bias=False)
            self.down_proj = torch.nn.Linear(160, 64, bias=False)

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_attn, self.mlp = Attn(), MLP()

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(Layer(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets))
    model = model.to(torch.bfloat16)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    layer = model.base_model.model
    layer.self_attn.apply_qkv, layer.self_attn.apply_o = apply_lora_qkv, apply_lora_o
    layer.mlp.forward = types.MethodType(apply_lora_mlp_swiglu, layer.mlp)
    x = torch.randn(2, 24, 64, dtype=torch.bfloat16)

    def step() -> tuple[torch.Tensor, list[torch.Tensor]]:
        q, k, v = layer.self_attn.apply_qkv(layer.self_attn, x)
        out = torch.cat([layer.mlp(layer.self_attn.apply_o(layer.self_attn, q)).flatten(), k.flatten(), v.flatten()])
        lora = [p for n, p in model.named_parameters() if "lora_" in n]
        return out, list(torch.autograd.grad(out.float().square().mean(), lora))

    want, want_grads = step()
    done = fp8.install(model, logging.getLogger("test"))
    assert (done.projections, done.layers, done.skipped) == (7, 1, {})
    assert layer.self_attn.apply_qkv is not apply_lora_qkv
    got, got_grads = step()
    assert 0 < rel(got, want) < 0.08
    for g, w in zip(got_grads, want_grads, strict=True):
        assert rel(g, w) < 0.15
    model.eval()  # evaluation and generation go back to unsloth's functions, exactly
    with torch.no_grad():
        for a, b in zip(layer.self_attn.apply_qkv(layer.self_attn, x), apply_lora_qkv(layer.self_attn, x), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(layer.mlp(x), apply_lora_mlp_swiglu(layer.mlp, x))
    # Groups whose weights are all under MIN_ELEMENTS keep unsloth's own (faster in bf16) functions.
    layer.self_attn.apply_qkv, layer.self_attn.apply_o = apply_lora_qkv, apply_lora_o
    layer.mlp.forward = types.MethodType(apply_lora_mlp_swiglu, layer.mlp)
    monkeypatch.setattr(fp8, "MIN_ELEMENTS", [64 * 160])  # the MLP's 64 x 160 weights, not attention's
    done = fp8.install(model, logging.getLogger("test"))
    assert (done.projections, done.layers) == (3, 1) and len(done.skipped) == 2, done.skipped
    assert layer.self_attn.apply_qkv is apply_lora_qkv and layer.self_attn.apply_o is apply_lora_o
    assert layer.mlp.forward.__func__ is not apply_lora_mlp_swiglu
    # SIFT_FP8_FAST_BACKWARD=1 is read at install time (the bench's sift-fp8-fastbwd).
    monkeypatch.setattr(fp8, "FAST_BACKWARD", [False])
    monkeypatch.setenv("SIFT_FP8_FAST_BACKWARD", "1")
    fp8.install(model, logging.getLogger("test"))
    assert fp8.FAST_BACKWARD == [True]


def test_fast_accumulation_in_the_input_gradients_is_a_switch(monkeypatch) -> None:
    """The forward products always take the tensor cores' fast accumulation; the input-gradient
    products only with FAST_BACKWARD (fp32 accumulation by default)."""
    seen: list[bool] = []
    real = fp8.scaled_mm
    monkeypatch.setattr(fp8, "scaled_mm", lambda *a, fast: seen.append(fast) or real(*a, fast=fast))
    monkeypatch.setattr(fp8, "MIN_ELEMENTS", [0])
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 32, generator=g).to(torch.bfloat16)
    dy = torch.randn(20, 64, generator=g).to(torch.bfloat16)
    want = dy.float() @ w.float()
    for flag in (False, True):
        monkeypatch.setattr(fp8, "FAST_BACKWARD", [flag])
        assert rel(fp8.base_backward(dy, w, cache=False), want) < 0.08
    fp8.base_forward(torch.randn(20, 32, generator=g).to(torch.bfloat16), w, cache=False)
    assert seen == [False, True, True]
