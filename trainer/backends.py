"""Loading the base model with LoRA adapters: the `hf` and `unsloth` backends.

- `hf`: transformers + peft. On CUDA the base loads in 4 bits through bitsandbytes (nf4, double
  quantization, bf16 compute) — QLoRA. On CPU 4-bit training is not reliable, so the model loads
  in fp32 and trains plain LoRA.
- `unsloth`: `FastLanguageModel` in 4 bits with its own gradient checkpointing. Unsloth patches
  transformers and trl for the whole process, so it is imported here and nowhere else, and only
  when chosen.
- `auto`: unsloth when CUDA is present and unsloth imports, else hf; always hf for several processes
  (unsloth trains in one process only).

Several processes (trainer/distributed.py): under ddp / deepspeed-zero2 each rank loads its own
model onto its GPU (QLoRA: one 4-bit model per rank); under fsdp / deepspeed-zero3 the base loads in
bf16 without a device map and the strategy shards it (plain LoRA: 4-bit is not sharded here).

Both return a peft model and its tokenizer; training itself is trl's SFTTrainer for both.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from curation.errors import StageError
from trainer.config import TrainConfig

_LINEAR_SKIP = ("lm_head", "embed_tokens", "score", "classifier")


class BackendError(StageError):
    pass


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    backend: str
    device: str
    dtype: str
    quantized: bool
    # What the run folder records: the fused kernels in use ("liger", "unsloth" or "none") and the
    # attention implementation the model ended up with.
    kernels: str = "none"
    attention: str = ""
    # The frozen base's matrix products: "bf16", or FP8 (trainer/fp8.py) with how many projections.
    matmul: str = "bf16"


def resolve_kernels(cfg: TrainConfig, backend: str, cuda: bool, log: logging.Logger | None = None) -> str:
    """The fused kernels a run uses: unsloth's own under the unsloth backend; under hf, liger-kernel on
    CUDA when asked for or (auto) when it is installed; never on the CPU (liger's kernels are Triton)."""
    if backend == "unsloth":
        return "unsloth"
    if cfg.kernels == "none":
        return "none"
    have = importlib.util.find_spec("liger_kernel") is not None
    if cfg.kernels == "liger":
        if not cuda:
            raise BackendError("kernels 'liger' needs a CUDA GPU (liger-kernel is Triton); use 'auto' or 'none'")
        if not have:
            raise BackendError("kernels 'liger' needs the liger-kernel package: pip install -e '.[cuda]'")
        return "liger"
    if cuda and have:
        return "liger"
    if cuda and log is not None:
        log.info("kernels auto: liger-kernel is not installed, training without fused kernels")
    return "none"


def resolve_attention(cfg: TrainConfig, cuda: bool) -> str:
    """The hf backend's attention: what the config names, or for `auto` flex_attention on CUDA with
    packing (document masks that skip the blocks between packed conversations) and sdpa otherwise
    (the CPU, padded batches, or a torch without flex_attention)."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    import torch

    several = torch.distributed.is_available() and torch.distributed.is_initialized()  # not measured there
    if cuda and cfg.packing and not several and importlib.util.find_spec("torch.nn.attention.flex_attention"):
        return "flex_attention"
    return "sdpa"


def attention_of(model: Any) -> str:
    cfg = getattr(model, "config", None)
    return str(getattr(cfg, "_attn_implementation", None) or getattr(cfg, "attn_implementation", None) or "")


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(cfg: TrainConfig, log: logging.Logger, world_size: int = 1) -> str:
    if cfg.device == "cuda" and not cuda_available():
        raise BackendError("device 'cuda' was asked for, and torch sees no CUDA GPU on this machine")
    if cfg.backend != "auto":
        if cfg.backend == "unsloth" and not cuda_available():
            raise BackendError("the unsloth backend needs CUDA; use backend 'hf' on this machine")
        if cfg.backend == "unsloth" and world_size > 1:
            raise BackendError("the unsloth backend trains in one process only; use backend 'hf' for several GPUs")
        return cfg.backend
    if world_size > 1:
        log.info("auto backend: hf (unsloth trains in one process only; this run has %d)", world_size)
        return "hf"
    if cuda_available() and importlib.util.find_spec("unsloth") is not None:
        return "unsloth"
    if cuda_available():
        log.info("auto backend: unsloth is not installed, using hf")
    return "hf"


def linear_targets(model: Any) -> list[str]:
    """Names (last component) of every linear layer except the output head: 'all-linear'."""
    import torch

    names: set[str] = set()
    for name, mod in model.named_modules():
        cls = type(mod).__name__
        if isinstance(mod, torch.nn.Linear) or cls in ("Linear4bit", "Linear8bitLt"):
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in _LINEAR_SKIP:
                names.add(leaf)
    return sorted(names)


def _targets(cfg: TrainConfig, model: Any) -> list[str]:
    if cfg.lora_target_modules in (["all-linear"], ["all_linear"]):
        return linear_targets(model)
    return list(cfg.lora_target_modules)


def _fix_tokenizer(tok: Any) -> Any:
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_hf(cfg: TrainConfig, model_path: str, log: logging.Logger, *, sharded: bool = False) -> Loaded:
    """`sharded`: fsdp / deepspeed-zero3 will shard the model, so no 4-bit and no device map."""
    try:
        import torch
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ImportError(f"the hf backend needs torch, transformers and peft ({e}): pip install -e '.[train]'") from e

    tok = _fix_tokenizer(AutoTokenizer.from_pretrained(model_path))
    cuda = torch.cuda.is_available()
    kernels = resolve_kernels(cfg, "hf", cuda, log)  # before loading: a wrong choice fails fast
    attention = resolve_attention(cfg, cuda)
    quantized = bool(cuda and cfg.load_in_4bit and not sharded and cfg.lora)
    if cuda and cfg.load_in_4bit and sharded:
        log.info(
            "sharded strategy: the base loads in %s and trains plain LoRA (4-bit is for ddp)",
            cfg.bnb_4bit_compute_dtype,
        )
    kw: dict[str, Any] = {"attn_implementation": attention}
    if cuda:
        compute = getattr(torch, cfg.bnb_4bit_compute_dtype)
        kw["dtype"] = compute
        if not sharded:
            # Under ddp the process group is up, so this is the rank's own GPU (LOCAL_RANK).
            kw["device_map"] = {"": torch.cuda.current_device()}
        if quantized:
            try:
                from transformers import BitsAndBytesConfig
            except ImportError as e:  # pragma: no cover - old transformers
                raise ImportError(f"4-bit loading needs bitsandbytes ({e}): pip install -e '.[cuda]'") from e
            if importlib.util.find_spec("bitsandbytes") is None:
                raise ImportError("4-bit loading needs bitsandbytes: pip install -e '.[cuda]'")
            kw["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
                bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
                bnb_4bit_compute_dtype=compute,
            )
    else:
        if cfg.load_in_4bit and cfg.lora:
            log.info("no CUDA: training plain LoRA in fp32 (4-bit is for CUDA)")
        kw["dtype"] = torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    if quantized:
        gc_kw = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gc_kw = {"use_reentrant": False}  # reentrant checkpointing and DDP's gradient hooks do not mix
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing, gradient_checkpointing_kwargs=gc_kw
        )
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    dtype = "4bit-" + cfg.bnb_4bit_compute_dtype if quantized else str(kw["dtype"]).replace("torch.", "")
    if not cfg.lora:  # full fine-tuning: every weight trains; the base for comparisons loads later
        from trainer import recipes

        log.info("full fine-tuning: every weight of the base model trains (%s)", dtype)
        recipes.register_base(model, model_path, dtype=kw["dtype"], device=model.device)
        return Loaded(model, tok, "hf", "cuda" if cuda else "cpu", dtype, False, kernels, attention_of(model))
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=_targets(cfg, model),
        bias="none",
        task_type="CAUSAL_LM",
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
    )
    model = get_peft_model(model, lora)
    return Loaded(model, tok, "hf", "cuda" if cuda else "cpu", dtype, quantized, kernels, attention_of(model))


def unsloth_attention(packed: str, impl: str) -> str:
    """What the run records as its attention under unsloth: the packed-row dispatch (`packed`, from
    trainer.varlen.install) serves sdpa layers only; a model on flex_attention (unsloth's choice for
    Gemma 3) or eager attention never reaches it, and the run names what it has."""
    return packed if packed and impl in ("sdpa", "") else impl


def attention_override_note(named: str, got: str) -> str:
    """What the log warns when unsloth runs the model on other attention than the config names; empty
    when it runs what was named (or the config left it at `auto`). unsloth 2026.10 refuses sdpa for
    Gemma 3 and runs it eager: 0.43x its own flex_attention choice at the Gemma 3 1B shape, 0.45x at 4B
    (H100, BENCHMARKS.md)."""
    if named in ("", "auto") or not got or got == named:
        return ""
    return (f"attn_implementation '{named}' was named, but unsloth runs this model on '{got}'; 'auto' leaves "
            "the choice to unsloth (for Gemma 3 it refuses sdpa, and eager measured 0.43x its flex_attention)")  # fmt: skip


def load_unsloth(cfg: TrainConfig, model_path: str, log: logging.Logger) -> Loaded:
    try:
        import unsloth  # noqa: F401 - must come before unsloth_zoo, transformers patches
        from unsloth import FastLanguageModel
    except ImportError as e:
        raise ImportError(f"the unsloth backend needs unsloth ({e}): pip install -e '.[gpu]'") from e
    import torch

    model, tok = FastLanguageModel.from_pretrained(
        model_name=model_path,
        max_seq_length=cfg.max_seq_len,
        dtype=getattr(torch, cfg.bnb_4bit_compute_dtype),
        load_in_4bit=cfg.load_in_4bit,
        local_files_only=True,
        # auto: unsloth's choice (flex_attention for Gemma 3, its own dispatch for Llama)
        **({} if cfg.attn_implementation == "auto" else {"attn_implementation": cfg.attn_implementation}),
    )
    targets = _targets(cfg, model)
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
        random_state=cfg.seed,
        use_rslora=cfg.use_rslora,
        **({"use_dora": True} if cfg.use_dora else {}),
    )
    if note := attention_override_note(cfg.attn_implementation, attention_of(model)):
        log.warning(note)
    from trainer import varlen

    try:
        packed = varlen.install(cfg.packed_attention, log) if cfg.packing else ""
    except varlen.PackedAttentionError as e:
        raise BackendError(str(e)) from e
    dtype = ("4bit-" if cfg.load_in_4bit else "") + cfg.bnb_4bit_compute_dtype
    return Loaded(
        model,
        _fix_tokenizer(tok),
        "unsloth",
        "cuda",
        dtype,
        cfg.load_in_4bit,
        "unsloth",
        unsloth_attention(packed, attention_of(model)),
        matmul=fp8_base_products(cfg, model, log),
    )


def fp8_base_products(cfg: TrainConfig, model: Any, log: logging.Logger) -> str:
    """Put the frozen base's products on FP8 tensor cores where `fp8_matmul` and the GPU allow it
    (trainer/fp8.py); returns what the run folder records."""
    if cfg.fp8_matmul == "off" or not cfg.lora or not cfg.load_in_4bit:
        if cfg.fp8_matmul == "on":
            raise BackendError("fp8_matmul 'on' is for LoRA over a 4-bit base (lora and load_in_4bit on)")
        return "bf16"
    from trainer import fp8

    if not fp8.fp8_supported():
        if cfg.fp8_matmul == "on":
            raise BackendError("fp8_matmul 'on' needs a GPU with FP8 tensor cores (H100, H200, Ada); use 'auto'")
        log.info("fp8_matmul auto: this GPU has no FP8 tensor cores; the base products stay bf16")
        return "bf16"
    import torch

    capability = torch.cuda.get_device_capability()
    if cfg.fp8_matmul == "auto" and not fp8.auto_takes(capability):
        log.info("fp8_matmul auto: FP8 was measured faster on sm_90 (H100, H200) only; this GPU (sm_%d%d) "
                 "keeps the base products in bf16 ('on' uses FP8 here)", *capability)  # fmt: skip
        return "bf16"
    done = fp8.install(model, log)
    if cfg.fp8_matmul == "on" and not done.projections:
        reasons = "; ".join(done.skipped) or "no fused LoRA layer found"
        raise BackendError(f"fp8_matmul 'on' found no layer it can take ({reasons}); use 'auto' or 'off'")
    return done.label


def sdpa_backends(cfg: TrainConfig, log: logging.Logger) -> str:
    """`sdpa_cudnn: false` takes cuDNN's kernels out of torch's SDPA for this (trainer) process, so that
    SDPA picks flash or memory-efficient attention; returns the note the run folder's `attention` gets."""
    if cfg.sdpa_cudnn:
        return ""
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)
    log.info("sdpa_cudnn off: SDPA uses flash or memory-efficient attention, not cuDNN's")
    return " (cuDNN off)"


def load(
    cfg: TrainConfig, model_path: str, log: logging.Logger, *, world_size: int = 1, sharded: bool = False
) -> Loaded:
    backend = choose_backend(cfg, log, world_size)
    log.info("backend %s, base model %s", backend, model_path)
    if cfg.fp8_matmul == "on" and backend != "unsloth":
        raise BackendError("fp8_matmul 'on' runs under the unsloth backend only; use 'auto' or 'off' here")
    note = sdpa_backends(cfg, log)
    loaded: Loaded | None = None
    if backend == "unsloth":
        try:
            loaded = load_unsloth(cfg, model_path, log)
        except ImportError as e:
            if cfg.backend != "auto":
                raise
            log.warning("auto backend: unsloth does not import (%s); using hf", e)
            if cfg.fp8_matmul == "on":
                raise BackendError(f"fp8_matmul 'on' runs under unsloth, which does not import here ({e})") from e
    if loaded is None:
        loaded = load_hf(cfg, model_path, log, sharded=sharded)
    if note and (loaded.attention.startswith("sdpa") or not loaded.attention):
        loaded.attention = (loaded.attention or "sdpa") + note
    return loaded


def load_for_eval(cfg: TrainConfig, model_path: str, adapter: Any, log: logging.Logger) -> Loaded:
    """The base with a saved adapter in one process, for rank 0's evaluation after a sharded run
    (fsdp / deepspeed-zero3), where no rank holds the whole trained model: same dtype as trained."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    kw: dict[str, Any] = {"attn_implementation": resolve_attention(cfg.override(packing=False), cuda)}
    if cuda:
        kw["dtype"] = getattr(torch, cfg.bnb_4bit_compute_dtype)
        kw["device_map"] = {"": torch.cuda.current_device()}
    else:
        kw["dtype"] = torch.float32
    if not cfg.lora:  # a sharded full fine-tune saved the whole model where the adapter would be
        from trainer import recipes

        full: Any = AutoModelForCausalLM.from_pretrained(str(adapter), **kw)
        recipes.register_base(full, model_path, dtype=kw["dtype"], device=full.device)
        return Loaded(full, _fix_tokenizer(AutoTokenizer.from_pretrained(str(adapter))), "hf",
                      "cuda" if cuda else "cpu", str(kw["dtype"]).replace("torch.", ""), False)  # fmt: skip
    base = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    model = PeftModel.from_pretrained(base, str(adapter))
    log.info("evaluating a fresh copy of the base with the saved adapter (the trained model was sharded)")
    dtype = str(kw["dtype"]).replace("torch.", "")
    return Loaded(
        model,
        _fix_tokenizer(AutoTokenizer.from_pretrained(str(adapter))),
        "hf",
        "cuda" if cuda else "cpu",
        dtype,
        False,
    )


def for_inference(loaded: Loaded) -> None:
    if loaded.backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(loaded.model)
    else:
        loaded.model.eval()
        if loaded.attention == "flex_attention":
            # flex_attention pays off over packed rows; generation runs padded batches of new lengths
            # every step, which sdpa serves without compiling.
            try:
                base = loaded.model.get_base_model() if hasattr(loaded.model, "get_base_model") else loaded.model
                base.set_attn_implementation("sdpa")
            except Exception as e:  # pragma: no cover - a transformers without the switch: evaluate as trained
                logging.getLogger(__name__).info("kept flex_attention for evaluation (%s)", e)
