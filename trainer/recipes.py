"""Training recipes beyond plain LoRA: DoRA, rsLoRA (peft flags set in trainer/backends.py) and full
fine-tuning (`lora: false`).

A full fine-tune has no adapter to switch off, so "the base model" for the base-vs-tuned
comparisons (eval loss, generation, the gate, forgetting, the memorisation probe) is a second,
frozen copy loaded from the same weights the first time it is needed (after training, so it does
not share memory with the optimizer). `base_view(model)` hides the difference: it disables the
adapter of a peft model, or yields that frozen copy.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

# model → how to load its base (path, dtype, device): only full fine-tunes register here.
_BASES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def is_adapter(model: Any) -> bool:
    return hasattr(model, "disable_adapter")


def register_base(model: Any, path: str, *, dtype: Any, device: Any) -> None:
    _BASES[model] = {"path": path, "dtype": dtype, "device": device, "model": None}


@contextlib.contextmanager
def base_view(model: Any) -> Iterator[Any]:
    """The base model to compare against: the adapter switched off, or the frozen base copy."""
    if is_adapter(model):
        with model.disable_adapter():
            yield model
        return
    spec = _BASES.get(model)
    if spec is None:
        raise RuntimeError("a full fine-tune without a registered base model (trainer.recipes.register_base)")
    if spec["model"] is None:
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(spec["path"], dtype=spec["dtype"])
        spec["model"] = base.to(spec["device"]).eval()
    yield spec["model"]


def trainable_summary(model: Any) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total}
