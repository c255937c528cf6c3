"""trainer/head.py: the LM head and the loss on the labelled rows only give the same loss and the same
gradients as every row (unsloth's fused cross-entropy cannot import on a CPU; `full_ce` below keeps its
contract: labels shifted inside unless told, the sum over labelled rows over n_items or their count)."""

from __future__ import annotations

import logging

import pytest
import torch

from trainer import head
from trainer.config import ConfigError, TrainConfig

CALLS: list[tuple[int, int]] = []


def full_ce(trainer=None, hidden_states=None, lm_head_weight=None, lm_head_bias=None, labels=None, mask=None,
            n_items=None, scaling=None, target_gb=None, torch_compile=True, shift_labels=True, **kw):  # fmt: skip
    CALLS.append(tuple(hidden_states.shape[:2]))
    if shift_labels:
        labels = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=-100)
    logits = hidden_states.reshape(-1, hidden_states.shape[-1]) @ lm_head_weight.t()
    target = labels.reshape(-1)
    keep = target != -100
    nll = torch.nn.functional.cross_entropy(logits, torch.where(keep, target, 0), reduction="none")
    total = torch.where(keep, nll, 0.0).sum()
    return total / (n_items if n_items is not None else keep.sum())


def _batch(seed: int, b: int = 2, t: int = 97, h: int = 24, v: int = 50, frac: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(b, t, h, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(v, h, generator=g, dtype=torch.float64)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) > frac] = -100
    return hs, w, labels


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("n_items", [None, 17])
def test_trained_rows_give_the_same_loss_and_gradients(monkeypatch, shift, n_items) -> None:
    monkeypatch.setattr(head, "BUCKET", 8)
    hs, w, labels = _batch(1)
    ref = full_ce(hidden_states=hs, lm_head_weight=w, labels=labels, n_items=n_items, shift_labels=shift)
    (g_ref,) = torch.autograd.grad(ref, hs)
    CALLS.clear()
    wrapped = head.trained_rows(full_ce)
    got = wrapped(trainer=None, hidden_states=hs, lm_head_weight=w, labels=labels, n_items=n_items, shift_labels=shift)
    (g_got,) = torch.autograd.grad(got, hs)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-12, atol=1e-15)
    # The head ran on the labelled rows only, rounded up to the bucket, as one pre-shifted row block.
    target = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=-100) if shift else labels
    n = int((target != -100).sum())
    assert [(1, -(-n // 8) * 8)] == CALLS and n < labels.numel() // 2
    # Rows with no label get exactly zero gradient, as before.
    assert (g_got.reshape(-1, hs.shape[-1])[target.reshape(-1) == -100] == 0).all()


def test_trained_rows_falls_back_where_it_cannot_help(monkeypatch) -> None:
    monkeypatch.setattr(head, "BUCKET", 8)
    wrapped = head.trained_rows(full_ce)
    assert head.trained_rows(wrapped) is wrapped  # not wrapped twice
    hs, w, labels = _batch(2, frac=1.0)  # every row labelled: the whole batch as it is
    CALLS.clear()
    wrapped(hidden_states=hs, lm_head_weight=w, labels=labels, shift_labels=False)
    assert CALLS == [(2, 97)]
    hs, w, labels = _batch(3)
    CALLS.clear()
    wrapped(hidden_states=hs, lm_head_weight=w, labels=labels, mask=torch.ones_like(labels))  # a mask: untouched
    wrapped(hidden_states=hs, lm_head_weight=w, labels=torch.full_like(labels, -100))  # nothing labelled
    assert CALLS == [(2, 97), (2, 97)]


unsloth_fused_ce_loss = full_ce  # what unsloth's model forwards look up in their module's globals


class _CausalLM(torch.nn.Module):
    def forward(self, hidden_states, labels):  # type: ignore[override]
        return unsloth_fused_ce_loss(hidden_states=hidden_states, lm_head_weight=self.w, labels=labels)


def test_install_wraps_the_loss_the_models_forward_calls(monkeypatch) -> None:
    monkeypatch.setitem(globals(), "unsloth_fused_ce_loss", full_ce)
    log = logging.getLogger("test")
    assert head.install(torch.nn.Linear(2, 2), log) == "all"
    assert head.install(_CausalLM(), log) == "trained"
    assert getattr(globals()["unsloth_fused_ce_loss"], "_sift_trained_rows", False)
    assert TrainConfig().loss_rows == "trained"
    with pytest.raises(ConfigError, match="loss_rows"):
        TrainConfig(loss_rows="some").validate()
