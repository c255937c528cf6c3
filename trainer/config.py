"""What a training run is told: one dataclass, every field with help text and the seeds' defaults.

The recipe the seeds recommend is QLoRA: LoRA r 16, alpha 32, dropout 0.05 on all linear layers,
lr 2e-4 with a cosine schedule and ~10% warm-up, loss on assistant tokens only. On CUDA the base
model is loaded in 4 bits (nf4, double quantization, bf16 compute); on CPU 4-bit training is not
reliable, so the `hf` backend trains plain LoRA in fp32 there.

A config file is JSON (or TOML) with any subset of these fields; unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import StageError

BACKENDS = ("auto", "hf", "unsloth")
KERNELS = ("auto", "liger", "none")
FP8_MATMUL = ("off", "auto", "on")
PACKED_ATTENTION = ("auto", "varlen", "segments")
STRATEGIES = ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")
DEVICES = ("auto", "cuda", "cpu")
# What best_metric may name: eval loss (lower is better) or a generation metric (higher is better).
BEST_METRICS = ("eval_loss", "exact_match", "token_f1", "rouge_l", "json_valid", "json_field_accuracy", "json_exact")
TRACKERS = ("tensorboard", "mlflow", "trackio")


class ConfigError(StageError):
    """A config file or value the trainer cannot use; the message names the field."""


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A field with an immutable default and its help text (and the form group it belongs to)."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # --- model
    base_model: str = _f(
        "smollm2-135m-instruct",
        "Base model: a Hugging Face id, a local folder, or the embedded SmolLM2-135M-Instruct (default).",
        group="model",
    )
    backend: str = _f(
        "auto",
        "auto | hf | unsloth. auto picks unsloth when CUDA is present and unsloth imports, else hf.",
        group="model",
        choices=BACKENDS,
    )
    load_in_4bit: bool = _f(
        True,
        "Load the base model in 4 bits on CUDA (QLoRA; one GPU, ddp or deepspeed-zero2). Ignored on CPU and "
        "under fsdp / deepspeed-zero3, which shard a bf16 base instead.",
        group="model",
    )
    bnb_4bit_quant_type: str = _f("nf4", "4-bit quantization type (nf4 or fp4).", group="model")
    bnb_4bit_use_double_quant: bool = _f(True, "Quantize the quantization constants too.", group="model")
    bnb_4bit_compute_dtype: str = _f("bfloat16", "Dtype of the 4-bit matmuls (bfloat16 or float16).", group="model")
    attn_implementation: str = _f(
        "auto",
        "Attention kernel for the hf backend: auto | sdpa | flex_attention | eager | flash_attention_2. auto: "
        "flex_attention on CUDA with packing (each packed conversation attends only to itself and the masked-off "
        "blocks are skipped; measured 1.6-2.1x trl's packed sdpa, BENCHMARKS.md), else sdpa (which masks packed "
        "conversations apart with a dense block-diagonal mask). The unsloth backend picks its own under auto and "
        "takes the one named otherwise.",
        group="model",
    )
    sdpa_cudnn: bool = _f(
        True,
        "Let torch's scaled-dot-product attention use cuDNN's kernels (torch's choice on H100/H200). false: "
        "SDPA takes flash or memory-efficient attention instead. The H100 profiles show cuDNN's attention "
        "costing 0.4-0.9 ms of CPU a call over packed conversations of varying length, which steps bound by "
        "the host (1B shapes, the FP8 path at 8B) pay in full; not yet measured without it, so on by default.",
        group="model",
    )
    packed_attention: str = _f(
        "auto",
        "How the unsloth backend's attention keeps packed conversations apart: auto | varlen | segments. "
        "varlen: one flash varlen call per layer over each packed row, cut at the conversations' boundaries "
        "(trainer/varlen.py; what unsloth itself does on torch 2.12 and later). segments: unsloth's own path "
        "on torch 2.11, one SDPA call per conversation (cuDNN's attention on H100/H200). auto: varlen where "
        "the GPU and torch have flash attention (the default: measured with bf16 base products at 1.70-1.89x "
        "unsloth at the 1B shape and 1.16-1.19x at 8B, with less memory and the same loss, on H100s and an "
        "H200; BENCHMARKS.md).",
        group="model",
        choices=PACKED_ATTENTION,
    )
    kernels: str = _f(
        "auto",
        "Fused training kernels for the hf backend: auto | liger | none. auto uses liger-kernel (fused linear "
        "cross-entropy that never holds the whole logits tensor, RMSNorm, SwiGLU, RoPE) on CUDA when it is "
        "installed; the unsloth backend brings its own kernels; the CPU trains without.",
        group="model",
        choices=KERNELS,
    )
    fp8_matmul: str = _f(
        "auto",
        "The frozen 4-bit base's matrix products on FP8 tensor cores (unsloth backend, LoRA on an nf4 base; "
        "trainer/fp8.py): off | auto | on. auto (the default): on for weights of at least 8M elements on the "
        "GPUs it was measured faster on (sm_90: H100, H200), else unsloth's bf16 products; other FP8 GPUs "
        "(Ada, Blackwell: untimed) keep bf16, and the CPU and the hf backend are unchanged. LoRA weights, "
        "gradients, activations and the loss stay bf16. "
        "Measured with the varlen attention (H100, BENCHMARKS.md): 1.55-1.56x unsloth at the 8B shape at less "
        "memory (7.49 vs 7.62 GiB), loss +0.10-0.17%; 1.56-1.98x at 1B; against bf16 products 1.31x at 8B, 1.05x "
        "at 1B; Gemma 3 is untouched (unsloth's compiled path has no fused LoRA functions to take). "
        "on: FP8 on any GPU with FP8 tensor cores (sm_89+), and the run fails if it cannot. off: unsloth's bf16 "
        "products everywhere.",
        group="model",
        choices=FP8_MATMUL,
    )
    device: str = _f(
        "auto",
        "auto | cuda | cpu. auto trains on CUDA when present, else on the CPU; cpu hides the GPUs.",
        group="model",
        choices=DEVICES,
    )
    # --- processes (several GPUs through `accelerate launch`; see trainer/distributed.py)
    num_processes: int = _f(
        1,
        "Training processes, one per GPU (`sift train --gpus N`); on the CPU, N processes over gloo "
        "(`--cpu-processes N`). The global batch is per_device_train_batch_size x gradient_accumulation_steps x N.",
        group="processes",
    )
    strategy: str = _f(
        "ddp",
        "With num_processes > 1: ddp (a whole model per rank; QLoRA on CUDA), fsdp (FSDP2 shards a bf16 base; "
        "plain LoRA), deepspeed-zero2 (QLoRA; optimizer state and gradients sharded), deepspeed-zero3 (bf16 "
        "base sharded; plain LoRA). DeepSpeed needs CUDA and the deepspeed package; unsloth runs one process only.",
        group="processes",
        choices=STRATEGIES,
    )
    # --- LoRA
    lora_r: int = _f(16, "LoRA rank.", group="lora")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r).", group="lora")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA path.", group="lora")
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={
            "help": "Modules that get adapters; 'all-linear' means every linear layer but the output head.",
            "group": "lora",
        },
    )
    use_dora: bool = _f(
        False, "DoRA: weight-decomposed LoRA (magnitude + direction; peft use_dora). Slower per step.", group="lora"
    )
    use_rslora: bool = _f(
        False, "rsLoRA: scale the adapter by alpha / sqrt(r) instead of alpha / r (stable at high ranks).", group="lora"
    )
    lora: bool = _f(
        True,
        "Train a LoRA adapter (true) or fine-tune every weight (false: full fine-tuning, bf16 on CUDA, fp32 on "
        "CPU; no 4-bit; the run saves the whole model). On several GPUs pair it with fsdp or deepspeed-zero3.",
        group="lora",
    )
    # --- optimisation
    learning_rate: float = _f(2e-4, "Peak learning rate.", group="optim")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule (cosine, linear, constant, ...).", group="optim")
    warmup_ratio: float = _f(0.1, "Fraction of the steps spent warming the learning rate up.", group="optim")
    weight_decay: float = _f(0.0, "AdamW weight decay.", group="optim")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.", group="optim")
    optim: str = _f("adamw_torch", "Optimizer name as transformers knows it.", group="optim")
    num_train_epochs: float = _f(2.0, "Passes over the train split (ignored when max_steps > 0).", group="optim")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: run the epochs).", group="optim")
    per_device_train_batch_size: int = _f(4, "Conversations (or packed rows) per micro-batch.", group="optim")
    gradient_accumulation_steps: int = _f(4, "Micro-batches per optimizer step.", group="optim")
    gradient_checkpointing: bool = _f(True, "Recompute activations in the backward pass to save memory.", group="optim")
    seed: int = _f(42, "Seed for shuffling, LoRA initialisation and dropout.", group="optim")
    # --- data
    max_seq_len: int = _f(
        1024, "Tokens per conversation (or packed row); longer ones are cut at the end.", group="data"
    )
    assistant_only_loss: bool = _f(
        True, "Train on assistant tokens only (the prompt and tool results are context).", group="data"
    )
    system_prompt: str = _f(
        "",
        "What happens to a leading system prompt before rendering: keep | fold (into the first user turn) | "
        "drop. Empty (default): the policy the version was validated with (manifest tokenizer record), else keep.",
        group="data",
    )
    packing: bool = _f(
        True,
        "Pack several conversations into one row (best-fit; sample boundaries kept: each conversation attends "
        "only to itself and keeps its own positions and loss mask). The measured fast default (BENCHMARKS.md).",
        group="data",
    )
    padding_free: bool = _f(
        False,
        "Concatenate a batch into one row without padding (position ids keep conversations apart).",
        group="data",
    )
    # --- checkpoints and logging
    logging_steps: int = _f(5, "Log loss, lr, grad norm and tokens/s every N steps.", group="run")
    eval_steps: int = _f(0, "Compute the eval loss every N steps (0: only at the end).", group="run")
    save_steps: int = _f(0, "Save the adapter every N steps (0: only at the end).", group="run")
    profile_steps: int = _f(
        0, "Profile N training steps (from step 5) with torch.profiler into profile.txt (0: off).", group="run"
    )
    # --- evaluation
    evaluate: bool = _f(True, "Evaluate after training (loss, generation with base and tuned).", group="eval")
    eval_limit: int = _f(0, "Generate for at most K eval conversations (0: all).", group="eval")
    eval_loss_limit: int = _f(0, "Compute the eval loss on at most K conversations (0: all).", group="eval")
    eval_batch_size: int = _f(8, "Prompts per generation batch.", group="eval")
    max_new_tokens: int = _f(256, "Longest generated answer.", group="eval")
    generate_base: bool = _f(True, "Also generate with the base model (adapter off) for comparison.", group="eval")
    extra_eval: str = _f(
        "",
        "Also evaluate on the eval split of another exported version (its folder or manifest.json), e.g. a clean "
        "gold set frozen as its own version; with `sift train` a version name works too (empty: none).",
        group="eval",
    )
    checkpoint_eval_limit: int = _f(
        4,
        "At every save_steps checkpoint, generate for the first K eval prompts (the fixed subset the end of "
        "the run is scored on too) besides the eval loss (0: eval loss only).",
        group="eval",
    )
    best_metric: str = _f(
        "eval_loss",
        "Metric on the run's own eval split that picks its best checkpoint: eval_loss (lower is better) or a "
        "generation metric such as json_field_accuracy or rouge_l (higher is better). Never the gold set.",
        group="eval",
    )
    gate_against: str = _f(
        "base",
        "Regression gate reference: 'base' (the base model's answers) or the run id of the run in production "
        "(compared on the eval items both answered).",
        group="ship",
    )
    gate_threshold: float = _f(
        0.02,
        "The run is put on hold when more than this fraction of eval cases score lower than the reference.",
        group="ship",
    )
    mix_version: str = _f(
        "",
        "Forgetting guard: mix conversations of another version's train split into the train split (its folder, "
        "a version name with `sift train`, or 'builtin:generic' for the generic set Sift ships).",
        group="ship",
    )
    mix_fraction: float = _f(
        0.0,
        "Fraction of the train split taken from mix_version (e.g. 0.05-0.1); recorded in config.json.",
        group="ship",
    )
    generic_eval: str = _f(
        "",
        "Forgetting guard: a generic version whose eval split is scored with the base and the tuned model, "
        "reported as `forgetting` ('builtin:generic', a folder, or a version name with `sift train`; empty: none).",
        group="ship",
    )
    probe_limit: int = _f(
        8,
        "Memorisation probe: training conversations whose last answer is cut and continued by the tuned and the "
        "base model (0: no probe).",
        group="ship",
    )
    probe_tokens: int = _f(32, "Memorisation probe: tokens of the answer held back and generated.", group="ship")
    report_to: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Experiment tracking, offline, into the run folder: tensorboard, mlflow, trackio (the package "
            "must be installed; empty: none).",
            "group": "run",
        },
    )
    judge_base_url: str = _f(
        "", "OpenAI-compatible endpoint for an LLM-as-judge pairwise win rate (empty: no judge).", group="eval"
    )
    judge_model: str = _f("", "Model name the judge endpoint serves.", group="eval")
    judge_api_key_env: str = _f("OPENAI_API_KEY", "Environment variable holding the judge's API key.", group="eval")

    # ------------------------------------------------------------------ helpers

    @classmethod
    def fields_help(cls) -> list[dict[str, Any]]:
        """name, default, type, group and help of every field (the UI's form and `--help`)."""
        return [
            {
                "name": f.name,
                "default": f.default if f.default is not dataclasses.MISSING else f.default_factory(),  # type: ignore[operator]
                "type": f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)),
                "group": f.metadata.get("group", ""),
                "help": f.metadata["help"],
                "choices": f.metadata.get("choices"),
            }
            for f in dataclasses.fields(cls)
        ]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        defaults = cls()
        values: dict[str, Any] = {}
        for k, v in d.items():
            want = type(getattr(defaults, k))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if want is list and isinstance(v, str):
                v = [s.strip() for s in v.split(",") if s.strip()]
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ConfigError(f"config field {k!r} must be {want.__name__}, got {type(v).__name__} {v!r}")
            values[k] = v
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"config field 'backend' must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.system_prompt not in ("", "keep", "fold", "drop"):
            raise ConfigError(
                f"config field 'system_prompt' must be keep, fold or drop (or empty), got {self.system_prompt!r}"
            )
        if self.kernels not in KERNELS:
            raise ConfigError(f"config field 'kernels' must be one of {', '.join(KERNELS)}, got {self.kernels!r}")
        if self.fp8_matmul not in FP8_MATMUL:
            raise ConfigError(
                f"config field 'fp8_matmul' must be one of {', '.join(FP8_MATMUL)}, got {self.fp8_matmul!r}"
            )
        if self.packed_attention not in PACKED_ATTENTION:
            raise ConfigError(
                f"config field 'packed_attention' must be one of {', '.join(PACKED_ATTENTION)}, "
                f"got {self.packed_attention!r}"
            )
        if self.device not in DEVICES:
            raise ConfigError(f"config field 'device' must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"config field 'strategy' must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.num_processes > 1 and self.backend == "unsloth":
            raise ConfigError(
                "the unsloth backend trains in one process on one GPU only; for several GPUs use backend 'hf' "
                "(QLoRA under ddp, LoRA under fsdp)"
            )
        if self.num_processes > 1 and self.strategy.startswith("deepspeed") and self.device == "cpu":
            raise ConfigError(
                f"strategy {self.strategy!r} runs on CUDA GPUs only; CPU processes train with ddp or fsdp"
            )
        for name in (
            "num_processes",
            "lora_r",
            "lora_alpha",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "max_seq_len",
            "eval_batch_size",
            "max_new_tokens",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"config field {name!r} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"config field 'lora_dropout' must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"config field 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"config field 'max_steps' must be -1 or positive, got {self.max_steps}")
        self._validate_ship()
        if self.judge_base_url and not self.judge_model:
            raise ConfigError("config field 'judge_model' is needed when 'judge_base_url' is set")

    def _validate_ship(self) -> None:
        """The fields of issue 20 (checkpoint harness, gate, forgetting guard, probe, recipes)."""
        if not 0 <= self.mix_fraction < 1:
            raise ConfigError(f"config field 'mix_fraction' must be in [0, 1), got {self.mix_fraction}")
        if self.mix_fraction and not self.mix_version:
            raise ConfigError("config field 'mix_version' is needed when 'mix_fraction' is set")
        if not 0 <= self.gate_threshold <= 1:
            raise ConfigError(f"config field 'gate_threshold' must be in [0, 1], got {self.gate_threshold}")
        for name in ("checkpoint_eval_limit", "probe_limit", "probe_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config field {name!r} must be 0 or more, got {getattr(self, name)}")
        if self.best_metric not in BEST_METRICS:
            raise ConfigError(
                f"config field 'best_metric' must be one of {', '.join(BEST_METRICS)}, got {self.best_metric!r}"
            )
        bad = sorted(set(self.report_to) - set(TRACKERS))
        if bad:
            raise ConfigError(f"config field 'report_to' accepts {', '.join(TRACKERS)}, got {', '.join(bad)}")
        if not self.lora and (self.use_dora or self.use_rslora):
            raise ConfigError("use_dora / use_rslora are LoRA options; full fine-tuning (lora: false) has no adapter")
        if not self.lora and self.backend == "unsloth":
            raise ConfigError("full fine-tuning (lora: false) runs on the hf backend; set backend 'hf' or 'auto'")

    def override(self, **changes: Any) -> TrainConfig:
        d = self.to_dict()
        d.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(d)


# ---------------------------------------------------------------------- measured defaults and presets

# The fields that set a run's speed and memory, at their shipped defaults: the fastest path measured
# within the best anchor's memory at the 1B and 8B shapes (BENCHMARKS.md, "Trainer at the sizes people
# train"): unsloth's engine under Sift's packing where unsloth is installed, with one flash varlen
# attention call per layer over each packed row and the frozen base's products on FP8 tensor cores where
# the GPU has them (H100, one invocation with every anchor: 1.55x unsloth's own at 8B, 1.56x at 1B, less
# memory, loss +0.10%; 3.5x trl with liger at half its memory; Gemma 3: unsloth's own compiled path, a tie);
# without unsloth, hf + liger-kernel + flex_attention document masks (1.6-2.1x trl with liger).
MEASURED_DEFAULTS: dict[str, Any] = {
    "backend": "auto",
    "load_in_4bit": True,
    "packing": True,
    "kernels": "auto",
    "attn_implementation": "auto",
    "gradient_checkpointing": True,
    "packed_attention": "auto",
    "fp8_matmul": "auto",
}

# The Train page's presets: each is a label, a line of help and its changes over TrainConfig()'s
# defaults (which are MEASURED_DEFAULTS); the page applies them as a starting point.
PRESETS: dict[str, dict[str, Any]] = {
    "gpu-recommended": {
        "label": "QLoRA on one GPU (recommended)",
        "help": "4-bit base, LoRA r16 on all linear layers, packed rows; unsloth when installed (with one flash "
        "varlen attention call per layer and, on H100/H200, the base's products on FP8 tensor cores), "
        "else liger-kernel and flex_attention: the measured fast path at the same or less memory.",
        "config": {},
    },
    "cpu-quick": {
        "label": "Quick check (CPU, minutes)",
        "help": "A few dozen steps on the CPU with short rows: checks the data trains, not a usable model.",
        "config": {
            "device": "cpu",
            "max_steps": 30,
            "max_seq_len": 512,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "gradient_checkpointing": False,
            "lora_r": 8,
            "lora_alpha": 16,
            "eval_limit": 20,
            "max_new_tokens": 96,
        },
    },
    "gpu-thorough": {
        "label": "Thorough (GPU)",
        "help": "Three epochs at LoRA r32 and longer rows: slower, for the run you keep.",
        "config": {"num_train_epochs": 3.0, "lora_r": 32, "lora_alpha": 64, "max_seq_len": 2048},
    },
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """TrainConfig of a preset (PRESETS), then the overrides that are not None."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name]["config"], **{k: v for k, v in overrides.items() if v is not None}})


def load_config(path: str | Path | None, **overrides: Any) -> TrainConfig:
    """The defaults, then the file (JSON or TOML), then the overrides that are not None."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from None
        try:
            data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"config {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {p} must hold one object of fields")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data)


# ---------------------------------------------------------------------- VRAM estimate


def estimate_vram_gib(cfg: TrainConfig, model_config: dict[str, Any]) -> dict[str, float]:
    """A rough peak-memory estimate from the model's config.json (no torch needed).

    Weights: 4 bits per parameter (+ scales) for quantized linear layers, 2 bytes for embeddings;
    LoRA parameters with fp32 master copy, gradients and AdamW moments (16 bytes each);
    activations: per layer a few hidden-sized tensors per token (fewer with checkpointing);
    logits in fp32 for every token of a micro-batch.
    """
    h = int(model_config.get("hidden_size", 576))
    n_layers = int(model_config.get("num_hidden_layers", 30))
    inter = int(model_config.get("intermediate_size", 4 * h))
    vocab = int(model_config.get("vocab_size", 49152))
    n_heads = int(model_config.get("num_attention_heads", 9))
    n_kv = int(model_config.get("num_key_value_heads", n_heads))
    head = h // n_heads
    kv = n_kv * head
    per_layer_linear = h * h * 2 + h * kv * 2 + 3 * h * inter  # q,o + k,v + gate,up,down
    linear = per_layer_linear * n_layers
    embed = vocab * h * (1 if model_config.get("tie_word_embeddings", True) else 2)
    quant = cfg.load_in_4bit
    weight_bytes = linear * (0.5 + 0.0625 if quant else 2) + embed * 2
    lora_per_layer = cfg.lora_r * ((h + h) * 2 + (h + kv) * 2 + (h + inter) * 3)
    lora = lora_per_layer * n_layers
    lora_bytes = lora * 16
    tokens = cfg.per_device_train_batch_size * cfg.max_seq_len
    act_per_token_layer = (2 if cfg.gradient_checkpointing else 16) * h * 2
    act_bytes = tokens * n_layers * act_per_token_layer + tokens * inter * 2 * 2
    logits_bytes = tokens * vocab * 4 * 2
    gib = 1024**3
    out = {
        "weights": weight_bytes / gib,
        "lora_and_optimizer": lora_bytes / gib,
        "activations": act_bytes / gib,
        "logits": logits_bytes / gib,
    }
    out["total"] = sum(out.values()) + 0.3  # CUDA context, allocator slack
    return {k: round(v, 2) for k, v in out.items()}
