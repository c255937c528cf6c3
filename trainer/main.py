"""`python -m trainer --manifest PATH --config PATH --out RUN_DIR`

Reads like the script it is: parse the config → load and verify the manifest and its files →
render with the chat template → train → evaluate → write results. It never opens the DuckDB
file; everything it has to say lands in the run folder (see trainer/rundir.py).

Under `accelerate launch` (several GPUs or CPU processes, trainer/distributed.py) every rank runs
this same script: all ranks load, render and train in step; rank 0 alone writes the run folder,
saves the adapter and evaluates, as a one-process run would, while the other ranks exit.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, load_config
from trainer.distributed import Ranks, ranks_from_env
from trainer.rundir import RunDir, utcnow


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer", description="Train a LoRA adapter on a frozen Sift version.")
    p.add_argument("--manifest", required=True, help="manifest.json of an exported version (or its folder)")
    p.add_argument("--config", help="JSON or TOML file with TrainConfig fields (defaults otherwise)")
    p.add_argument("--out", required=True, help="run folder to write (status.json, metrics.jsonl, adapter, eval.json)")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--eval-limit", type=int, help="override eval_limit")
    p.add_argument("--base-model", help="override base_model (HF id or local folder)")
    p.add_argument("--backend", choices=["auto", "hf", "unsloth"], help="override backend")
    return p


LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "unsloth", "unsloth_zoo")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    ranks = ranks_from_env()
    run = RunDir(args.out, rank=ranks.rank, world_size=ranks.world_size)
    run.install_signal_handlers()
    run.status(state="running", started_at=utcnow(), pid=os.getpid(), step=0, total=None, message="starting")
    try:
        # 1. config
        cfg = load_config(
            args.config,
            max_steps=args.max_steps,
            eval_limit=args.eval_limit,
            base_model=args.base_model,
            backend=args.backend,
        )
        if cfg.device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks for GPUs
        code = run_training(cfg, Path(args.manifest), run, ranks)
    except BaseException as e:
        if isinstance(e, SystemExit | KeyboardInterrupt) and run.stop_requested:
            run.status(state="cancelled", finished_at=utcnow())
            code = 143
        else:
            run.fail(e)
            code = 1
    if ranks.distributed:
        from trainer import distributed

        distributed.shutdown()
        # Under a launcher a cancelled rank exits 0: torch's launcher would take 143 for a failure
        # and signal the other ranks.
        code = 0 if code == 143 else code
        if not ranks.is_main:
            distributed.exit_now(code)
    return code


def run_training(cfg: TrainConfig, manifest: Path, run: RunDir, ranks: Ranks | None = None) -> int:
    from trainer.manifest import load_export

    ranks = ranks or Ranks()
    log = run.log
    # 2. manifest and files, verified
    export = load_export(manifest)
    from trainer import extra_eval

    extra = extra_eval.load(cfg)  # checked now, so a wrong path fails before training
    log.info(
        "version %s (manifest %s…): %d train, %d eval conversations",
        export.version,
        export.manifest_sha256[:12],
        len(export.train),
        len(export.eval),
    )
    run.write_json(
        "config.json",
        {
            "config": cfg.to_dict(),
            "manifest": {
                "path": str(export.path / "manifest.json"),
                "version": export.version,
                "manifest_sha256": export.manifest_sha256,
                "files": export.manifest.get("files"),
            },
            "libraries": library_versions(),
            "host": {"platform": platform.platform(), "argv": sys.argv},
            "processes": {"world_size": ranks.world_size, "strategy": ranks.strategy if ranks.distributed else None},
        },
    )

    # 3. model, tokenizer, rendering
    import torch

    from curation.models import resolve_model
    from trainer import backends, distributed
    from trainer.data import eval_prompts, render_all, renderer_for, system_policy, tool_call_prompts

    if ranks.distributed:
        state = distributed.init(cpu=cfg.device == "cpu" or not torch.cuda.is_available())
        # Every rank's pid, so that `sift cancel` can signal them all (see workbench/jobs.py).
        run.status(
            pids=distributed.gather_pids(),
            launcher_pid=os.getppid(),
            world_size=ranks.world_size,
            strategy=ranks.strategy,
            process_backend=str(state.backend),
        )
        log.info("rank 0 of %d (%s, %s)", ranks.world_size, ranks.strategy, state.backend)
    elif cfg.num_processes > 1:
        log.warning(
            "the config asks for %d processes, and this one was not started by a launcher: training in one "
            "process (sift train --gpus N / --cpu-processes N launch them)",
            cfg.num_processes,
        )
    torch.manual_seed(cfg.seed)
    run.status(message="loading model")
    model_path = resolve_model(cfg.base_model)
    loaded = backends.load(cfg, model_path, log, world_size=ranks.world_size, sharded=ranks.sharded)
    model, tok = loaded.model, loaded.tokenizer
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("device %s, %s, %d trainable parameters", loaded.device, loaded.dtype, trainable)
    renderer = renderer_for(tok, system_policy(cfg.system_prompt, export.manifest))
    log.info("system-prompt policy: %s", renderer.system_prompt)
    train_ex, train_stats = render_all(
        tok, export.train, cfg.max_seq_len, assistant_only=cfg.assistant_only_loss, renderer=renderer
    )
    eval_ex, eval_stats = render_all(
        tok, export.eval, cfg.max_seq_len, assistant_only=cfg.assistant_only_loss, renderer=renderer
    )
    if cfg.eval_loss_limit:
        eval_ex = eval_ex[: cfg.eval_loss_limit]
    log.info("rendered train %s, eval %s", train_stats, eval_stats)
    if not train_ex:
        raise ValueError("no train conversation has an assistant turn to learn from")
    stopping = distributed.any_rank(run.stop_requested) if ranks.distributed else run.stop_requested
    if stopping:
        run.status(state="cancelled", finished_at=utcnow(), message="cancelled before training")
        return 143

    # 4. train (and save the adapter: rank 0 writes it, gathered from the shards where sharded)
    run.status(message="training", backend=loaded.backend, device=loaded.device)
    summary = train(cfg, loaded, train_ex, eval_ex, run, ranks)
    if not ranks.is_main:
        return 143 if run.stop_requested else 0  # rank 0 alone evaluates and reports
    if run.stop_requested:
        run.status(
            state="cancelled", finished_at=utcnow(), message=f"cancelled at step {summary['steps']}; adapter kept"
        )
        log.info("cancelled; adapter of step %d saved", summary["steps"])
        return 143

    # 5. evaluate
    from trainer import evaluate as ev

    if not cfg.evaluate:
        run.write_json(
            "eval.json", {"version": export.version, "manifest_sha256": export.manifest_sha256, "train": summary}
        )
        run.status(state="succeeded", finished_at=utcnow(), message="done (no evaluation)", summary=summary)
        return 0

    run.status(message="evaluating")
    if ranks.sharded:
        import gc

        del model, loaded
        gc.collect()
        loaded = backends.load_for_eval(cfg, model_path, run.adapter_path, log)
        model, tok = loaded.model, loaded.tokenizer
    backends.for_inference(loaded)
    stop = lambda: run.stop_requested  # noqa: E731
    prompts = eval_prompts(export.eval, renderer.system_prompt)
    call_prompts = tool_call_prompts(export.eval, renderer.system_prompt)
    if cfg.eval_limit:
        prompts = prompts[: cfg.eval_limit]
        call_prompts = call_prompts[: cfg.eval_limit]
    tool_calls: tuple[list[str], list[str] | None] | None = None
    result: dict[str, Any] = {"version": export.version, "manifest_sha256": export.manifest_sha256, "train": summary}
    try:
        tuned_loss = ev.eval_loss(model, eval_ex, tok.pad_token_id, batch_size=cfg.eval_batch_size, should_stop=stop)
        with model.disable_adapter():
            base_loss = ev.eval_loss(model, eval_ex, tok.pad_token_id, batch_size=cfg.eval_batch_size, should_stop=stop)
        result.update(eval_loss=tuned_loss, perplexity=ev.perplexity(tuned_loss), n_eval_loss=len(eval_ex))
        log.info("eval loss tuned %s, base %s", tuned_loss, base_loss)
        gen_kw: dict[str, Any] = {
            "max_new_tokens": cfg.max_new_tokens,
            "batch_size": cfg.eval_batch_size,
            "should_stop": stop,
        }
        t0 = time.monotonic()
        tuned = ev.generate(model, tok, prompts, **gen_kw)
        base = None
        if cfg.generate_base:
            with model.disable_adapter():
                base = ev.generate(model, tok, prompts, **gen_kw)
        log.info("generated %d answers (x%d) in %.1f s", len(prompts), 2 if base else 1, time.monotonic() - t0)
        if call_prompts:  # turns that call tools: scored on the calls themselves
            run.status(message=f"evaluating {len(call_prompts)} tool calls")
            tuned_calls = ev.generate(model, tok, call_prompts, **gen_kw)
            base_calls = None
            if cfg.generate_base:
                with model.disable_adapter():
                    base_calls = ev.generate(model, tok, call_prompts, **gen_kw)
            tool_calls = (tuned_calls, base_calls)
        if extra is not None:
            run.status(message=f"evaluating on {extra.version or 'the extra eval version'}")
            result["extra_eval"] = extra_eval.evaluate(cfg, extra, model, tok, run, renderer=renderer, gen_kw=gen_kw)
    except ev.Stopped:
        run.status(state="cancelled", finished_at=utcnow(), message="cancelled during evaluation; adapter kept")
        return 143
    metrics, rows = ev.summarize(prompts, base, tuned)
    metrics["tuned"]["eval_loss"] = tuned_loss
    metrics["tuned"]["perplexity"] = ev.perplexity(tuned_loss)
    if base is not None:
        metrics["base"]["eval_loss"] = base_loss
        metrics["base"]["perplexity"] = ev.perplexity(base_loss)
    result.update(metrics)
    result["n_generated"] = len(prompts)
    if tool_calls is not None:
        result["tool_calls"], call_rows = ev.summarize_tool_calls(call_prompts, tool_calls[1], tool_calls[0])
        with open(run.path / "tool_call_samples.jsonl", "w", encoding="utf-8") as f:
            for r in call_rows:
                f.write(ev.dumps_line(r))
    if cfg.judge_base_url and base is not None:
        run.status(message="judging")
        result["judge"] = ev.judge_pairwise(
            prompts,
            base,
            tuned,
            base_url=cfg.judge_base_url,
            model=cfg.judge_model,
            api_key=os.environ.get(cfg.judge_api_key_env),
            seed=cfg.seed,
        )
    with open(run.path / "samples.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(ev.dumps_line(r))
    run.write_json("eval.json", result)
    run.status(state="succeeded", finished_at=utcnow(), message="done", summary=summary)
    log.info("done: %s", {k: result.get(k) for k in ("eval_loss", "perplexity")})
    return 0


def train(
    cfg: TrainConfig, loaded: Any, train_ex: list[Any], eval_ex: list[Any], run: RunDir, ranks: Ranks | None = None
) -> dict[str, Any]:
    """trl's SFTTrainer over pre-rendered (input_ids, labels); progress and metrics into the run folder,
    the adapter into run.adapter_path. With several ranks every rank calls this in step."""
    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset  # type: ignore[attr-defined]  # (mypy sees ./datasets)
    from trainer import distributed

    rk: Ranks = ranks or Ranks()
    model, tok = loaded.model, loaded.tokenizer
    cuda = loaded.device == "cuda"
    multi = rk.distributed
    bf16 = cuda and torch.cuda.is_bf16_supported()
    ds = Dataset.from_dict({"input_ids": [e.input_ids for e in train_ex], "labels": [e.labels for e in train_ex]})
    eval_ds = None
    if cfg.eval_steps and eval_ex:
        eval_ds = Dataset.from_dict(
            {"input_ids": [e.input_ids for e in eval_ex], "labels": [e.labels for e in eval_ex]}
        )
    padding_free = cfg.padding_free or cfg.packing
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio); older ones have both.
    fields = getattr(SFTConfig, "__dataclass_fields__", {})
    warmup: dict[str, Any] = (
        {"warmup_ratio": cfg.warmup_ratio} if "warmup_ratio" in fields else {"warmup_steps": cfg.warmup_ratio}
    )
    args = SFTConfig(
        output_dir=str(run.path / "checkpoints"),
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        **warmup,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        # Rows are already cut to max_seq_len; padding-free without packing must not re-truncate.
        max_length=cfg.max_seq_len if (cfg.packing or not padding_free) else None,
        packing=cfg.packing,
        padding_free=padding_free,
        gradient_checkpointing=False,  # the backend set it up (unsloth's own, or use_reentrant=False)
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=cfg.eval_steps or None,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        fp16=False,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=True,
        dataset_num_proc=None,
        remove_unused_columns=True,
        # Every LoRA weight takes part in every step: no search for unused parameters under DDP.
        ddp_find_unused_parameters=False if multi else None,
    )
    started = time.monotonic()
    track: dict[str, Any] = {"last_t": started, "last_tokens": 0, "tokens": 0, "steps": 0}
    # Non-padding tokens seen by the model in training, counted at its forward (works for every
    # backend and collator: padded batches carry an attention mask, padding-free ones do not).
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    counted = {"tokens": torch.zeros((), dtype=torch.long, device=device)}
    # Tokens of all ranks (a collective, so every rank calls it at the same points).
    total_tokens = (
        (lambda: distributed.sum_ranks(counted["tokens"])) if multi else (lambda: int(counted["tokens"].item()))
    )
    holder: dict[str, Any] = {}

    def count_tokens(_mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not _mod.training:
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None:
            counted["tokens"] += mask.sum()
        elif ids is not None:
            counted["tokens"] += ids.numel()

    hook = model.register_forward_pre_hook(count_tokens, with_kwargs=True)
    profiler: dict[str, Any] = {}

    class Progress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            track["total"] = state.max_steps
            track["last_t"] = time.monotonic()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            run.status(step=0, total=state.max_steps)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cfg.profile_steps and state.global_step == 5 and run.writer:
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                profiler["p"] = profile(activities=acts)
                profiler["p"].__enter__()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            track["steps"] = state.global_step
            if "p" in profiler and state.global_step == 5 + cfg.profile_steps:
                p = profiler.pop("p")
                if cuda:
                    torch.cuda.synchronize()
                p.__exit__(None, None, None)
                ka = p.key_averages()
                text = [f"profile of steps 6..{state.global_step}"]
                for key in (["self_cuda_time_total"] if cuda else []) + ["self_cpu_time_total"]:
                    text.append(ka.table(sort_by=key, row_limit=25))
                (run.path / "profile.txt").write_text("\n\n".join(text), encoding="utf-8")
            run.progress(state.global_step, state.max_steps, started)
            if multi and distributed.any_rank(run.stop_requested):
                run.stop_requested = True  # every rank stops after this same step
            if run.stop_requested:
                control.should_training_stop = True
            if cfg.save_steps and state.global_step % cfg.save_steps == 0:
                if multi:
                    save_adapter(holder["trainer"], loaded, run, rk)
                else:
                    kwargs["model"].save_pretrained(run.adapter_path)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            logs = logs or {}
            now = time.monotonic()
            row: dict[str, Any] = {"step": state.global_step, "ts": round(now - started, 3)}
            if "loss" in logs:
                tokens = total_tokens()
                dt = now - track["last_t"]
                row.update(
                    loss=logs["loss"],
                    lr=logs.get("learning_rate"),
                    grad_norm=logs.get("grad_norm"),
                    epoch=logs.get("epoch"),
                    tokens=tokens,
                    tokens_per_s=round((tokens - track["last_tokens"]) / dt, 1) if dt > 0 and tokens else None,
                )
                track["last_t"], track["last_tokens"], track["tokens"] = now, tokens, tokens
                if cuda:
                    row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
            if "eval_loss" in logs:
                row["eval_loss"] = logs["eval_loss"]
            if len(row) > 2:
                run.metric(row)
                run.log.info(
                    "step %d: %s", state.global_step, {k: v for k, v in row.items() if k not in ("step", "ts")}
                )

    trainer = SFTTrainer(
        model=model, args=args, train_dataset=ds, eval_dataset=eval_ds, processing_class=tok, callbacks=[Progress()]
    )
    holder["trainer"] = trainer
    try:
        out = trainer.train()
    finally:
        hook.remove()
    elapsed = time.monotonic() - started
    track["tokens"] = total_tokens()
    save_adapter(trainer, loaded, run, rk)
    summary: dict[str, Any] = {
        "steps": track["steps"],
        "total_steps": track.get("total"),
        "train_loss": round(float(out.training_loss), 5) if out.training_loss is not None else None,
        "runtime_s": round(elapsed, 2),
        "tokens": track["tokens"],
        "tokens_per_s": round(track["tokens"] / elapsed, 1) if track["tokens"] else None,
        "train_examples": len(train_ex),
        "backend": loaded.backend,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "processes": rk.world_size,
        "strategy": rk.strategy if multi else None,
    }
    if cuda:
        summary["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return summary


def save_adapter(trainer: Any, loaded: Any, run: RunDir, ranks: Ranks) -> None:
    """The adapter and tokenizer into run.adapter_path. With several ranks every rank calls this:
    the Trainer gathers sharded weights (fsdp, zero-3) and rank 0 alone writes."""
    if not ranks.distributed:
        loaded.model.save_pretrained(run.adapter_path)
        loaded.tokenizer.save_pretrained(run.adapter_path)
        return
    trainer.save_model(str(run.adapter_path))
    if run.writer:
        (run.adapter_path / "training_args.bin").unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
