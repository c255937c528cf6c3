"""Several GPUs (or several CPU processes) through `accelerate launch`.

Launch side (no torch needed, the workbench calls it): `plan()` resolves where the processes run
and refuses what cannot work, with a message that says what to do instead;
`accelerate_config()` is the config file written into the run folder (`accelerate.yaml`), and
`launch_command()` / `launch_env()` start `python -m accelerate.commands.launch --config_file
RUN/accelerate.yaml -m trainer ...`.

Strategies (`TrainConfig.strategy`, used when `num_processes` > 1), on the `hf` backend:
- `ddp`: each rank holds the whole model; on CUDA that is QLoRA, one 4-bit model per rank. Only the
  LoRA gradients are all-reduced.
- `fsdp`: FSDP2 shards a bf16 base (and the LoRA weights) across the ranks: plain LoRA, for a base
  that does not fit one GPU. `load_in_4bit` is ignored.
- `deepspeed-zero2`: like ddp (QLoRA on CUDA) with the optimizer state and gradients sharded.
- `deepspeed-zero3`: parameters sharded like fsdp (plain LoRA over a bf16 base).
DeepSpeed needs CUDA and the `deepspeed` package. The `unsloth` backend trains in one process only.

CPU processes: accelerate's own `--cpu` launch runs one process unless mpirun is installed, so CPU
processes are launched like GPU ones (torch's elastic launcher, `distributed_type: MULTI_GPU`) with
CUDA hidden; each rank then asks for the CPU and gets the gloo backend.

Rank side (inside `python -m trainer`, one process per rank): `Ranks` from the environment the
launcher sets; rank 0 alone writes the run folder. `any_rank()` makes every rank stop at the same
step when one was asked to (a rank that stopped alone would leave the others waiting in the next
gradient all-reduce), and `sum_ranks()` turns per-rank token counts into global ones.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import ConfigError, TrainConfig

# Strategies whose parameters are sharded: no rank holds the whole model after training, so
# rank 0 evaluates a fresh copy of the base with the saved adapter.
SHARDED = ("fsdp", "deepspeed-zero3")


class LaunchError(ConfigError):
    """A multi-process launch this machine or this config cannot do; the message says what can."""


# ---------------------------------------------------------------------- launch side


@dataclass(frozen=True)
class Plan:
    processes: int
    device: str  # "cuda" | "cpu" | "auto" (one process: the trainer decides, as before)
    strategy: str

    @property
    def distributed(self) -> bool:
        return self.processes > 1


def cuda_device_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def plan(cfg: TrainConfig, *, cuda_devices: int | None = None, has_deepspeed: bool | None = None) -> Plan:
    """Where the run's processes go, or a LaunchError saying why they cannot.

    `cuda_devices` / `has_deepspeed` default to what this machine has (torch is imported only when
    GPUs have to be counted)."""
    cfg.validate()
    n = cfg.num_processes
    if cfg.device == "cpu":
        device = "cpu"
    elif cfg.device == "auto" and n == 1:
        device = "auto"  # one process: the trainer picks CUDA when present, as it always did
    else:
        count = cuda_device_count() if cuda_devices is None else cuda_devices
        if count >= n:
            device = "cuda"
        elif cfg.device == "auto" and count == 0:
            device = "cpu"
        else:
            gpus = f"{n} CUDA GPU{'s' if n > 1 else ''}"
            has = f"this machine has {count}" if count else "this machine has none"
            also = (
                f"; --cpu-processes {n} runs {n} CPU process{'es' if n > 1 else ''} over gloo instead"
                if not count
                else ""
            )
            raise LaunchError(f"training on {n} GPU{'s' if n > 1 else ''} (--gpus {n}) needs {gpus}, and {has}{also}")
    if n > 1 and cfg.strategy.startswith("deepspeed"):
        if device == "cpu":
            raise LaunchError(f"strategy {cfg.strategy!r} runs on CUDA GPUs only; CPU processes train with ddp or fsdp")
        if not (deepspeed_installed() if has_deepspeed is None else has_deepspeed):
            raise LaunchError(
                f"strategy {cfg.strategy!r} needs DeepSpeed, which is not installed: pip install deepspeed "
                "(or use --strategy ddp or fsdp, which need nothing more)"
            )
    return Plan(n, device, cfg.strategy)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def accelerate_config(p: Plan, cfg: TrainConfig, *, port: int) -> dict[str, Any]:
    """The accelerate config file (as a dict) for a multi-process run."""
    out: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "MULTI_GPU",
        "downcast_bf16": "no",
        "enable_cpu_affinity": False,
        "gpu_ids": "all",
        "machine_rank": 0,
        "main_process_ip": "127.0.0.1",
        "main_process_port": port,
        "main_training_function": "main",
        # The trainer's own bf16 flag decides (TrainingArguments only falls back to this value).
        "mixed_precision": "no",
        "num_machines": 1,
        "num_processes": p.processes,
        "rdzv_backend": "static",
        "same_network": True,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        # CPU processes: see the module docstring (accelerate's cpu launch would start one process).
        "use_cpu": False,
    }
    if p.strategy == "fsdp":
        out["distributed_type"] = "FSDP"
        out["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's decoder layers
            "fsdp_reshard_after_forward": True,
            "fsdp_offload_params": False,
            # The adapter is saved whole by rank 0 (a full state dict gathered from the shards).
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
            "fsdp_activation_checkpointing": False,  # the backend sets up checkpointing itself
        }
    elif p.strategy.startswith("deepspeed"):
        stage = int(p.strategy[-1])
        out["distributed_type"] = "DEEPSPEED"
        out["deepspeed_config"] = {
            "zero_stage": stage,
            # Must equal the trainer's values: transformers refuses a DeepSpeed config that disagrees.
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "gradient_clipping": cfg.max_grad_norm,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": stage == 3,
            "zero3_save_16bit_model": stage == 3,
        }
    return out


def write_accelerate_config(path: Path, p: Plan, cfg: TrainConfig, *, port: int | None = None) -> Path:
    import yaml  # accelerate's own dependency

    path.write_text(
        "# Written by Sift for this run; `accelerate launch --config_file` reads it.\n"
        + yaml.safe_dump(accelerate_config(p, cfg, port=port or free_port()), sort_keys=False),
        encoding="utf-8",
    )
    return path


def launch_command(config_file: Path, trainer_args: list[str]) -> list[str]:
    """`accelerate launch` of `python -m trainer` with the run's config file."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    return [*launcher, "-m", "trainer", *trainer_args]


def launch_env(p: Plan) -> dict[str, str]:
    """Environment for the launcher: CPU processes hide the GPUs and split the cores between them."""
    if p.device != "cpu":
        return {}
    threads = max(1, (os.cpu_count() or 1) // p.processes)
    return {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}


# ---------------------------------------------------------------------- rank side


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run, from the variables the launcher sets."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    strategy: str = "ddp"  # as launched (accelerate's environment), not as configured

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        return self.distributed and self.strategy in SHARDED


def ranks_from_env(env: Any = None) -> Ranks:
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        strategy = "fsdp"
    elif env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        strategy = f"deepspeed-zero{env.get('ACCELERATE_DEEPSPEED_ZERO_STAGE', '2')}"
    else:
        strategy = "ddp"
    return Ranks(int(env.get("RANK", "0") or 0), int(env.get("LOCAL_RANK", "0") or 0), world, strategy)


def init(cpu: bool) -> Any:
    """Join the process group (gloo on the CPU, nccl on CUDA) through accelerate's PartialState,
    the same state the Trainer uses later; on CUDA this also selects the rank's GPU."""
    from accelerate import PartialState

    return PartialState(cpu=cpu)


def _device() -> Any:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_pids() -> list[int]:
    """Every rank's process id, in rank order (collective)."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, os.getpid())
    return [int(x) for x in out]


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (collective: every rank must call it)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_ranks(value: Any) -> int:
    """The sum of a per-rank count over all ranks (collective)."""
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(value, dtype=torch.long).detach().clone().to(_device()).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return int(t.item())


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_now(code: int) -> None:
    """End a rank other than 0 once its part is done, skipping the interpreter's teardown.

    Seen on CPU: a rank leaving normally sometimes aborts in C++ teardown ("terminate called
    without an active exception"); torch's launcher takes that for a failure and sends SIGTERM to
    rank 0, which may still be evaluating."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
