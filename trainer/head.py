"""The LM head and the loss on the trained rows only (unsloth backend; config `loss_rows`).

Under assistant-only loss most token rows carry no label (the ticket data: 70% of tokens are system
and user turns), yet unsloth's fused cross-entropy (`unsloth_fused_ce_loss`) multiplies every row by
the (vocab, hidden) head and upcasts every row's logits to fp32, then gives those rows zero loss and
zero gradient. At the 8B shape the head is ~4% of a step's products (4,096 x 128,256 at 8,192 rows,
forward and input gradient); at Gemma's 262,144-token vocabulary more.

`trained_rows(fn)` wraps that function: it shifts the labels as unsloth would, gathers the rows whose
(shifted) label is not IGNORE, and hands only those to `fn`, pre-shifted. The loss is the same sum
over the same rows divided by the same count (`n_items`, else the number of labelled rows), and the
hidden states' gradient is the same on those rows and exactly zero elsewhere, as before. The row
count is rounded up to a multiple of BUCKET with IGNORE rows (no loss, no gradient) so that the
compiled loss sees few distinct shapes.

It costs one host synchronisation per step (the count of labelled rows sets a shape).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch

IGNORE = -100
BUCKET = 256


def trained_rows(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (unsloth_fused_ce_loss's keyword signature: hidden_states (B, T, H), labels (B, T), mask,
    shift_labels, ...) computed on the labelled rows only."""
    if getattr(fn, "_sift_trained_rows", False):
        return fn

    @functools.wraps(fn)
    def loss(*args: Any, **kw: Any) -> Any:
        h, labels = kw.get("hidden_states"), kw.get("labels")
        if args or h is None or labels is None or kw.get("mask") is not None:
            return fn(*args, **kw)
        if h.dim() != 3 or tuple(labels.shape) != tuple(h.shape[:2]):
            return fn(**kw)
        if kw.get("shift_labels", True):  # label t+1 is row t's target; the last row has none
            labels = torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE)
        flat = labels.reshape(-1)
        rows = (flat != IGNORE).nonzero().squeeze(1)
        n = rows.numel()
        size = -(-n // BUCKET) * BUCKET
        if n == 0 or size >= flat.numel():
            return fn(**kw)
        if size > n:  # IGNORE rows (row 0's state: no loss, no gradient) up to the bucket
            rows = torch.cat([rows, rows.new_zeros(size - n)])
        picked = flat.index_select(0, rows)
        picked[n:] = IGNORE
        kw["hidden_states"] = h.reshape(-1, h.shape[-1]).index_select(0, rows).unsqueeze(0)
        kw["labels"] = picked.unsqueeze(0)
        kw["shift_labels"] = False
        return fn(**kw)

    setattr(loss, "_sift_trained_rows", True)  # noqa: B010
    return loss


def install(model: Any, log: logging.Logger) -> str:
    """Wrap unsloth's fused cross-entropy where this model's forward looks it up (the globals of its
    CausalLM class's forward: unsloth.models.llama's for Llama, a compiled module's for others).
    Returns what the run folder records: "trained" where it took, else "all"."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    fn = inspect.unwrap(type(lm).forward)
    scope = getattr(fn, "__globals__", {})
    ce = scope.get("unsloth_fused_ce_loss")
    if not callable(ce):
        log.info(
            "loss_rows trained: %s's forward does not use unsloth's fused cross-entropy; the head runs on every row",
            type(lm).__name__,
        )
        return "all"
    scope["unsloth_fused_ce_loss"] = trained_rows(ce)
    log.info("loss_rows trained: the LM head and loss run on labelled rows only (%s)", fn.__module__)
    return "trained"
