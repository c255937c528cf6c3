"""What the trainer watches while trl's SFTTrainer runs: the tokens the model sees and a callback that
writes progress, metrics, checkpoints and an optional profile into the run folder.

Imports torch and transformers at module level: `trainer.main.train` imports this module when it
starts training, never before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from trainer import distributed
from trainer.config import TrainConfig
from trainer.distributed import Ranks
from trainer.rundir import RunDir

PROFILE_FROM_STEP = 5  # the profiler skips the first steps (warm-up, compilation)


# What stalls the host or makes it wait for the GPU: synchronisations, scalar reads, data-dependent
# shapes, blocking copies. And the launches, whose CPU cost bounds a step of many small kernels.
HOST_WAITS = ("Synchronize", "aten::_local_scalar_dense", "aten::item", "aten::nonzero", "cudaMemcpy ")
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")


def host_summary(ka: Any, wall_s: float) -> str:
    """Where a profiled stretch's wall time went, from torch.profiler's key averages: the GPU's
    kernel time against the wall (what the GPU idles is the host's doing: launches or waits), the
    kernel launches, and every operation that makes the host wait, with its count and CPU time."""

    from torch.autograd import DeviceType

    def dev(e: Any) -> float:  # the kernels' own rows (the operators' rows repeat their time)
        if getattr(e, "device_type", None) != DeviceType.CUDA:
            return 0.0
        return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0)

    gpu_s = sum(dev(e) for e in ka) / 1e6
    launches = sum(e.count for e in ka if e.key in LAUNCHES)
    lines = [f"host: wall {wall_s:.3f} s (with the profiler's overhead), GPU kernels {gpu_s:.3f} s"
             f" ({gpu_s / max(wall_s, 1e-9):.0%} busy), {launches} kernel launches"]  # fmt: skip
    waits = sorted((e for e in ka if any(w in e.key + " " for w in HOST_WAITS)), key=lambda e: -e.self_cpu_time_total)
    for e in waits:
        lines.append(f"  waits: {e.key} x{e.count}, {e.self_cpu_time_total / 1e3:.1f} ms of CPU")
    if not waits:
        lines.append("  waits: none recorded")
    return "\n".join(lines)


def memory_peak(snapshot: dict[str, Any], top: int = 12) -> str:
    """Where the memory at the peak of a recorded stretch was allocated, from a CUDA allocator
    snapshot (`torch.cuda.memory._snapshot()` after `_record_memory_history`): the allocations made
    while recording that were live at its highest point, summed by the first frame outside torch."""
    events = [e for trace in snapshot.get("device_traces") or [] for e in trace]

    def replay(stop: int) -> tuple[dict[int, dict[str, Any]], int, int]:
        live: dict[int, dict[str, Any]] = {}
        cur, best, at = 0, 0, -1
        for i, e in enumerate(events[:stop]):
            if e.get("action") == "alloc":
                live[e["addr"]] = e
                cur += int(e["size"])
            elif e.get("action") == "free_completed" and e.get("addr") in live:
                cur -= int(live.pop(e["addr"])["size"])
            if cur > best:
                best, at = cur, i
        return live, best, at

    _, best, at = replay(len(events))
    if at < 0:
        return "memory: no allocations recorded"
    live, _, _ = replay(at + 1)
    where: dict[str, int] = {}
    for e in live.values():
        frames = [f for f in e.get("frames") or [] if "/torch/" not in f.get("filename", "")]
        f = frames[0] if frames else {"filename": "?", "line": 0, "name": "?"}
        key = f"{'/'.join(str(f.get('filename')).split('/')[-2:])}:{f.get('line')} {f.get('name')}"
        where[key] = where.get(key, 0) + int(e["size"])
    lines = [f"memory: at the recorded peak, {best / 2**30:.3f} GiB allocated since recording began was live"
             " (on top of what was live before), by where it was allocated:"]  # fmt: skip
    for key, size in sorted(where.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {size / 2**20:9.1f} MiB  {key}")
    return "\n".join(lines)


class TokenCounter:
    """Non-padding tokens seen by the model in training, counted at its forward (works for every
    backend and collator: padded batches carry an attention mask, padding-free ones do not)."""

    def __init__(self, model: Any, device: torch.device, multi: bool) -> None:
        self.multi = multi
        self.count = torch.zeros((), dtype=torch.long, device=device)
        self._hook = model.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None:
            self.count += mask.sum()
        elif ids is not None:
            self.count += ids.numel()

    def total(self) -> int:
        """Tokens of all ranks (a collective with several ranks, so every rank calls it at the same points)."""
        return distributed.sum_ranks(self.count) if self.multi else int(self.count.item())

    def remove(self) -> None:
        self._hook.remove()


class RunCallback(TrainerCallback):
    """Step progress and the stop request, loss/lr/throughput/memory metrics at each log, the adapter
    every `save_steps` (scored as a checkpoint by `score_checkpoint` in a one-process run), and a
    profile of `profile_steps` steps after step 5."""

    def __init__(
        self,
        cfg: TrainConfig,
        run: RunDir,
        loaded: Any,
        ranks: Ranks,
        tokens: TokenCounter,
        started: float,
        score_checkpoint: Callable[[int], None],
        save_adapter: Callable[[Any, Any, RunDir, Ranks], None],
    ) -> None:
        self.cfg, self.run, self.loaded, self.ranks = cfg, run, loaded, ranks
        self.tokens, self.started = tokens, started
        self.score_checkpoint, self.save_adapter = score_checkpoint, save_adapter
        self.cuda = loaded.device == "cuda"
        self.trainer: Any = None  # set once the SFTTrainer exists (a multi-rank save goes through it)
        self.steps = 0
        self.total_steps: int | None = None
        self.last_t = started
        self.last_tokens = 0
        self._profile: Any = None
        self._profile_t0 = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.total_steps = state.max_steps
        self.last_t = time.monotonic()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.run.status(step=0, total=state.max_steps)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.cfg.profile_steps and state.global_step == PROFILE_FROM_STEP and self.run.writer:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            self._profile = profile(activities=acts)
            self._profile.__enter__()
            self._profile_t0 = time.monotonic()
            if self.cuda:  # the allocations of the profiled steps, for memory_peak
                torch.cuda.memory._record_memory_history(stacks="python", max_entries=400_000)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        cfg, run = self.cfg, self.run
        self.steps = state.global_step
        if self._profile is not None and state.global_step == PROFILE_FROM_STEP + cfg.profile_steps:
            self._write_profile(state.global_step)
        run.progress(state.global_step, state.max_steps, self.started)
        if self.ranks.distributed and distributed.any_rank(run.stop_requested):
            run.stop_requested = True  # every rank stops after this same step
        if run.stop_requested:
            control.should_training_stop = True
        if cfg.save_steps and state.global_step % cfg.save_steps == 0:
            if self.ranks.distributed:
                self.save_adapter(self.trainer, self.loaded, run, self.ranks)
            else:
                kwargs["model"].save_pretrained(run.adapter_path)
                if state.global_step < state.max_steps and not run.stop_requested and cfg.evaluate:
                    self.score_checkpoint(state.global_step)

    def _write_profile(self, step: int) -> None:
        p, self._profile = self._profile, None
        if self.cuda:
            torch.cuda.synchronize()
        wall = time.monotonic() - self._profile_t0  # the profiled steps, before the profiler's own teardown
        p.__exit__(None, None, None)
        ka = p.key_averages()
        text = [f"profile of steps {PROFILE_FROM_STEP + 1}..{step}", host_summary(ka, wall)]
        if self.cuda:
            snapshot = torch.cuda.memory._snapshot()
            torch.cuda.memory._record_memory_history(enabled=None)
            text.append(memory_peak(snapshot))
        for key in (["self_cuda_time_total"] if self.cuda else []) + ["self_cpu_time_total"]:
            text.append(ka.table(sort_by=key, row_limit=25))
        (self.run.path / "profile.txt").write_text("\n\n".join(text), encoding="utf-8")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        now = time.monotonic()
        row: dict[str, Any] = {"step": state.global_step, "ts": round(now - self.started, 3)}
        if "loss" in logs:
            tokens = self.tokens.total()
            dt = now - self.last_t
            row.update(
                loss=logs["loss"],
                lr=logs.get("learning_rate"),
                grad_norm=logs.get("grad_norm"),
                epoch=logs.get("epoch"),
                tokens=tokens,
                tokens_per_s=round((tokens - self.last_tokens) / dt, 1) if dt > 0 and tokens else None,
            )
            self.last_t, self.last_tokens = now, tokens
            if self.cuda:
                row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        if "eval_loss" in logs:
            row["eval_loss"] = logs["eval_loss"]
        if len(row) > 2:
            self.run.metric(row)
            self.run.log.info(
                "step %d: %s", state.global_step, {k: v for k, v in row.items() if k not in ("step", "ts")}
            )
