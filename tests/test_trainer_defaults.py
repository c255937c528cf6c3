"""The trainer's measured fast defaults and how they fall back: kernels and attention resolve to the
fast path on CUDA and to plain sdpa without fused kernels on the CPU; presets are valid configs."""

from __future__ import annotations

import logging

import pytest

from trainer.backends import BackendError, resolve_attention, resolve_kernels
from trainer.config import MEASURED_DEFAULTS, PRESETS, ConfigError, TrainConfig, preset

LOG = logging.getLogger("test")


def test_shipped_defaults_are_the_measured_ones() -> None:
    cfg = TrainConfig()
    assert {k: getattr(cfg, k) for k in MEASURED_DEFAULTS} == MEASURED_DEFAULTS


def test_kernels_fall_back_on_cpu_and_refuse_liger_there() -> None:
    cfg = TrainConfig()
    assert resolve_kernels(cfg, "hf", cuda=False, log=LOG) == "none"
    assert resolve_kernels(cfg.override(kernels="none"), "hf", cuda=True) == "none"
    assert resolve_kernels(cfg, "unsloth", cuda=True) == "unsloth"
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        resolve_kernels(cfg.override(kernels="liger"), "hf", cuda=False)
    with pytest.raises(ConfigError, match="'kernels'"):
        cfg.override(kernels="triton")


def test_attention_auto_is_flex_for_packed_rows_on_cuda_only() -> None:
    cfg = TrainConfig()
    assert resolve_attention(cfg, cuda=True) == "flex_attention"
    assert resolve_attention(cfg, cuda=False) == "sdpa"
    assert resolve_attention(cfg.override(packing=False), cuda=True) == "sdpa"
    assert resolve_attention(cfg.override(attn_implementation="eager"), cuda=True) == "eager"


def test_presets_are_valid_configs() -> None:
    assert preset("gpu-recommended") == TrainConfig()
    quick = preset("cpu-quick", max_steps=5)
    assert quick.device == "cpu" and quick.max_steps == 5 and quick.packing
    for name, p in PRESETS.items():
        assert p["label"] and p["help"], name
        preset(name)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("fastest")


def test_evaluation_after_flex_attention_training_switches_to_sdpa() -> None:
    """Packed training runs flex_attention; generation's padded batches of new lengths use sdpa."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.backends import Loaded, attention_of, for_inference

    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    cfg._attn_implementation = "flex_attention"
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    assert attention_of(model) == "flex_attention"
    for_inference(Loaded(model, None, "hf", "cpu", "float32", False, "none", attention_of(model)))
    assert attention_of(model) == "sdpa" and not model.training
    ids = torch.tensor([[1, 2, 3, 4]])
    assert model(input_ids=ids).logits.shape == (1, 4, 64)


def test_sdpa_without_cudnn_is_a_switch_the_run_records() -> None:
    """`sdpa_cudnn: false` takes cuDNN's kernels out of SDPA for the trainer process (a lead for steps
    bound by the host, BENCHMARKS.md; off the default until measured) and the run's `attention` says
    so. Through the real load() of the embedded model on the CPU."""
    import torch

    from curation.models import resolve_model
    from trainer.backends import load, sdpa_backends

    assert TrainConfig().sdpa_cudnn is True
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        assert sdpa_backends(TrainConfig(), LOG) == "" and torch.backends.cuda.cudnn_sdp_enabled() == before
        cfg = TrainConfig(sdpa_cudnn=False, backend="hf")
        loaded = load(cfg, str(resolve_model()), LOG)
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert loaded.attention == "sdpa (cuDNN off)"
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
