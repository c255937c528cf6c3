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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, load_config
from trainer.distributed import Ranks, ranks_from_env
from trainer.recipes import base_view
from trainer.rundir import RunDir, read_json, utcnow


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


LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "unsloth",
    "unsloth_zoo",
    "liger_kernel",
)


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


@dataclass
class Inputs:
    """What the run reads before any model: the export (verified), the optional extra eval and
    forgetting-guard versions, and the train conversations (with the guard's mix-in, if any)."""

    export: Any
    extra: Any
    generic: Any
    train_convs: list[Any]
    mixed: dict[str, Any] | None


@dataclass
class Prepared:
    """The loaded model and everything rendered with its chat template."""

    loaded: Any
    model_path: str
    renderer: Any
    train_ex: list[Any]
    eval_ex: list[Any]
    prompts: list[Any]


def run_training(cfg: TrainConfig, manifest: Path, run: RunDir, ranks: Ranks | None = None) -> int:
    """The run, top to bottom: inputs → model and rendering → training → evaluation. Returns the
    exit code (0 done, 143 cancelled)."""
    ranks = ranks or Ranks()
    inputs = read_inputs(cfg, manifest, run, ranks)  # 2. manifest and files, verified
    prepared = prepare(cfg, inputs, run, ranks)  # 3. model, tokenizer, rendering
    stopping = distributed_any(ranks, run.stop_requested)
    if stopping:
        run.status(state="cancelled", finished_at=utcnow(), message="cancelled before training")
        return 143
    summary, checkpoints = fit(cfg, prepared, run, ranks)  # 4. train and save the adapter
    if not ranks.is_main:
        return 143 if run.stop_requested else 0  # rank 0 alone evaluates and reports
    if run.stop_requested:
        run.status(
            state="cancelled", finished_at=utcnow(), message=f"cancelled at step {summary['steps']}; adapter kept"
        )
        run.log.info("cancelled; adapter of step %d saved", summary["steps"])
        return 143
    if not cfg.evaluate:
        export = inputs.export
        run.write_json(
            "eval.json", {"version": export.version, "manifest_sha256": export.manifest_sha256, "train": summary}
        )
        run.status(state="succeeded", finished_at=utcnow(), message="done (no evaluation)", summary=summary)
        return 0
    return evaluate_run(cfg, inputs, prepared, run, ranks, summary, checkpoints)  # 5. evaluate


def distributed_any(ranks: Ranks, flag: bool) -> bool:
    """`flag` on any rank (every rank gets the same answer); the flag itself in a one-process run."""
    if not ranks.distributed:
        return flag
    from trainer import distributed

    return distributed.any_rank(flag)


def read_inputs(cfg: TrainConfig, manifest: Path, run: RunDir, ranks: Ranks) -> Inputs:
    """The export and the optional versions, checked before any model loads (a wrong path fails
    in seconds), and config.json recording what this run is."""
    from trainer import extra_eval, forgetting
    from trainer.manifest import load_export

    log = run.log
    export = load_export(manifest)
    extra = extra_eval.load(cfg)
    generic = forgetting.load_generic(cfg)
    mix_export = forgetting.load_mix(cfg)
    train_convs, mixed = export.train, None
    if mix_export is not None:  # the forgetting guard's mix-in, recorded in config.json
        train_convs, mixed = forgetting.mix(cfg, export.train, mix_export)
        log.info("mixed %d conversations of %s into the train split", mixed["conversations"], mixed["version"])
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
            "mix": mixed,
        },
    )
    return Inputs(export=export, extra=extra, generic=generic, train_convs=train_convs, mixed=mixed)


def prepare(cfg: TrainConfig, inputs: Inputs, run: RunDir, ranks: Ranks) -> Prepared:
    """Join the other ranks (if launched so), load the model with its backend and render the train
    and eval splits and the eval prompts with its chat template."""
    import torch

    from curation.models import resolve_model
    from trainer import backends, distributed
    from trainer.data import eval_prompts, render_all, renderer_for, system_policy

    log, export = run.log, inputs.export
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
    tok = loaded.tokenizer
    trainable = sum(p.numel() for p in loaded.model.parameters() if p.requires_grad)
    log.info("device %s, %s, %d trainable parameters", loaded.device, loaded.dtype, trainable)
    renderer = renderer_for(tok, system_policy(cfg.system_prompt, export.manifest))
    log.info("system-prompt policy: %s", renderer.system_prompt)
    train_ex, train_stats = render_all(
        tok, inputs.train_convs, cfg.max_seq_len, assistant_only=cfg.assistant_only_loss, renderer=renderer
    )
    eval_ex, eval_stats = render_all(
        tok, export.eval, cfg.max_seq_len, assistant_only=cfg.assistant_only_loss, renderer=renderer
    )
    if cfg.eval_loss_limit:
        eval_ex = eval_ex[: cfg.eval_loss_limit]
    log.info("rendered train %s, eval %s", train_stats, eval_stats)
    if not train_ex:
        raise ValueError("no train conversation has an assistant turn to learn from")
    prompts = eval_prompts(export.eval, renderer.system_prompt)
    if cfg.eval_limit:
        prompts = prompts[: cfg.eval_limit]
    return Prepared(
        loaded=loaded, model_path=model_path, renderer=renderer, train_ex=train_ex, eval_ex=eval_ex, prompts=prompts
    )


def fit(cfg: TrainConfig, prepared: Prepared, run: RunDir, ranks: Ranks) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train (rank 0 saves the adapter, gathered from the shards where sharded): the summary and the
    checkpoint rows the harness scored on the way."""
    from trainer import harness

    loaded = prepared.loaded
    run.status(
        message="training",
        backend=loaded.backend,
        device=loaded.device,
        kernels=loaded.kernels,
        attention=loaded.attention,
        matmul=loaded.matmul,
    )
    run.log.info(
        "kernels %s, attention %s, base products %s, packing %s",
        loaded.kernels,
        loaded.attention,
        loaded.matmul,
        cfg.packing,
    )
    checkpoints: list[dict[str, Any]] = []
    summary = train(
        cfg,
        loaded,
        prepared.train_ex,
        prepared.eval_ex,
        run,
        ranks,
        checkpoint_prompts=harness.subset(prepared.prompts, cfg),
        checkpoints=checkpoints,
    )
    return summary, checkpoints


def evaluate_run(
    cfg: TrainConfig,
    inputs: Inputs,
    prepared: Prepared,
    run: RunDir,
    ranks: Ranks,
    summary: dict[str, Any],
    checkpoints: list[dict[str, Any]],
) -> int:
    """Score the adapter (eval loss, answers against the base, tool calls, the optional extra eval,
    forgetting guard, memorisation probe and judge) and write eval.json and the samples."""
    from trainer import backends, extra_eval, forgetting, gate, harness
    from trainer import evaluate as ev
    from trainer.data import tool_call_prompts

    log, export, renderer, prompts, eval_ex = (
        run.log,
        inputs.export,
        prepared.renderer,
        prepared.prompts,
        prepared.eval_ex,
    )
    run.status(message="evaluating")
    if ranks.sharded:  # the shards are gone with the training processes: load the saved adapter whole
        import gc

        prepared.loaded = None
        gc.collect()
        prepared.loaded = backends.load_for_eval(cfg, prepared.model_path, run.adapter_path, log)
    loaded = prepared.loaded
    model, tok = loaded.model, loaded.tokenizer
    backends.for_inference(loaded)
    stop = lambda: run.stop_requested  # noqa: E731
    call_prompts = tool_call_prompts(export.eval, renderer.system_prompt)
    if cfg.eval_limit:
        call_prompts = call_prompts[: cfg.eval_limit]
    tool_calls: tuple[list[str], list[str] | None] | None = None
    result: dict[str, Any] = {"version": export.version, "manifest_sha256": export.manifest_sha256, "train": summary}
    try:
        tuned_loss = ev.eval_loss(model, eval_ex, tok.pad_token_id, batch_size=cfg.eval_batch_size, should_stop=stop)
        with base_view(model) as bm:
            base_loss = ev.eval_loss(bm, eval_ex, tok.pad_token_id, batch_size=cfg.eval_batch_size, should_stop=stop)
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
            with base_view(model) as bm:
                base = ev.generate(bm, tok, prompts, **gen_kw)
        log.info("generated %d answers (x%d) in %.1f s", len(prompts), 2 if base else 1, time.monotonic() - t0)
        if call_prompts:  # turns that call tools: scored on the calls themselves
            run.status(message=f"evaluating {len(call_prompts)} tool calls")
            tuned_calls = ev.generate(model, tok, call_prompts, **gen_kw)
            base_calls = None
            if cfg.generate_base:
                with base_view(model) as bm:
                    base_calls = ev.generate(bm, tok, call_prompts, **gen_kw)
            tool_calls = (tuned_calls, base_calls)
        if inputs.extra is not None:
            run.status(message=f"evaluating on {inputs.extra.version or 'the extra eval version'}")
            result["extra_eval"] = extra_eval.evaluate(
                cfg, inputs.extra, model, tok, run, renderer=renderer, gen_kw=gen_kw
            )
        if inputs.generic is not None:
            run.status(message=f"forgetting guard: scoring {inputs.generic.version or 'the generic version'}")
            scored = extra_eval.evaluate(
                cfg,
                inputs.generic,
                model,
                tok,
                run,
                renderer=renderer,
                gen_kw=gen_kw,
                samples_file=forgetting.SAMPLES_FILE,
            )
            result["generic_eval"] = scored
            result["forgetting"] = forgetting.forgetting(scored)
        if cfg.probe_limit:
            from trainer import probe

            run.status(message="memorisation probe")
            pii = probe.PiiIndex(read_json(run.path / probe.PII_FILE))
            if not pii.known:
                log.warning("%s is missing: the probe cannot check for PII (pii_emitted: not checked)", probe.PII_FILE)
            result["memorization"] = probe.probe(cfg, model, tok, export.train, pii, tuned_answers=tuned)
            log.info("memorisation probe: %s", {k: v for k, v in result["memorization"].items() if k != "base"})
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
    # The checkpoint harness: the end of the run is the last row, scored on the same subset.
    checkpoints.append(harness.final_row(summary["steps"], tuned_loss, len(eval_ex), rows, cfg.checkpoint_eval_limit))
    result["checkpoints"] = {
        "evaluated": checkpoints,
        "best": harness.best(checkpoints, cfg.best_metric),
        "metric": cfg.best_metric,
        "subset": min(cfg.checkpoint_eval_limit, len(prompts)),
    }
    result["gate"] = gate.against_base(rows, threshold=cfg.gate_threshold) if base is not None else None
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
    cfg: TrainConfig,
    loaded: Any,
    train_ex: list[Any],
    eval_ex: list[Any],
    run: RunDir,
    ranks: Ranks | None = None,
    *,
    checkpoint_prompts: list[Any] | None = None,
    checkpoints: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """trl's SFTTrainer over pre-rendered (input_ids, labels); progress and metrics into the run folder,
    the adapter into run.adapter_path. With several ranks every rank calls this in step.

    Every `save_steps` (one process): the adapter is also kept under checkpoints/step-N and scored by
    the checkpoint harness (trainer/harness.py); its rows are appended to `checkpoints`."""
    import torch
    from trl import SFTTrainer

    from trainer.callback import RunCallback, TokenCounter

    rk: Ranks = ranks or Ranks()
    cuda = loaded.device == "cuda"
    ds = examples_dataset(train_ex)
    eval_ds = examples_dataset(eval_ex) if cfg.eval_steps and eval_ex else None
    args = sft_config(cfg, run, loaded, rk, evaluate=eval_ds is not None)
    started = time.monotonic()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    tokens = TokenCounter(loaded.model, device, multi=rk.distributed)

    def score_checkpoint(step: int) -> None:
        """Keep this checkpoint and score it like the end of the run (eval loss + the fixed prompt subset)."""
        from trainer import evaluate as ev
        from trainer import harness

        rel = f"checkpoints/step-{step}"
        loaded.model.save_pretrained(run.path / rel)
        t0 = time.monotonic()
        try:
            row = harness.score_checkpoint(
                cfg, loaded, eval_ex, checkpoint_prompts or [], step=step, path=rel,
                should_stop=lambda: run.stop_requested,
            )  # fmt: skip
        except ev.Stopped:
            return
        if checkpoints is not None:
            checkpoints.append(row)
        run.metric({"step": step, "ts": round(time.monotonic() - started, 3), **row})
        run.log.info("checkpoint %s scored in %.1f s: eval loss %s", rel, time.monotonic() - t0, row.get("eval_loss"))

    callback = RunCallback(cfg, run, loaded, rk, tokens, started, score_checkpoint, save_adapter)
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=ds,
        eval_dataset=eval_ds,
        processing_class=loaded.tokenizer,
        callbacks=[callback],
    )
    callback.trainer = trainer
    try:
        out = trainer.train()
    finally:
        tokens.remove()
    elapsed = time.monotonic() - started
    seen = tokens.total()
    save_adapter(trainer, loaded, run, rk)
    return run_summary(cfg, loaded, rk, callback, out, elapsed=elapsed, tokens=seen, train_examples=len(train_ex))


def examples_dataset(examples: list[Any]) -> Any:
    """Rendered examples as the `datasets.Dataset` of (input_ids, labels) the SFTTrainer takes."""
    from datasets import Dataset  # type: ignore[attr-defined]  # (mypy sees ./datasets)

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]})


def sft_config(cfg: TrainConfig, run: RunDir, loaded: Any, rk: Ranks, *, evaluate: bool) -> Any:
    """trl's SFTConfig for this run: the TrainConfig's hyperparameters, no saving by the Trainer (the
    callback saves), bf16 where the GPU has it, tracking inside the run folder."""
    import torch
    from trl import SFTConfig

    cuda = loaded.device == "cuda"
    padding_free = cfg.padding_free or cfg.packing
    # transformers 5 folded warmup_ratio into warmup_steps (a float < 1 is a ratio); older ones have both.
    fields = getattr(SFTConfig, "__dataclass_fields__", {})
    warmup: dict[str, Any] = (
        {"warmup_ratio": cfg.warmup_ratio} if "warmup_ratio" in fields else {"warmup_steps": cfg.warmup_ratio}
    )
    return SFTConfig(
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
        eval_strategy="steps" if evaluate else "no",
        eval_steps=cfg.eval_steps or None,
        save_strategy="no",
        report_to=tracking(cfg, run),
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=False,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        disable_tqdm=True,
        dataset_num_proc=None,
        remove_unused_columns=True,
        # Every LoRA weight takes part in every step: no search for unused parameters under DDP.
        ddp_find_unused_parameters=False if rk.distributed else None,
        # liger-kernel's RMSNorm, SwiGLU, RoPE and fused linear cross-entropy (the loss straight from
        # the hidden states, in chunks: no logits tensor); the Trainer patches the model with them.
        use_liger_kernel=loaded.kernels == "liger",
    )


def run_summary(
    cfg: TrainConfig,
    loaded: Any,
    rk: Ranks,
    callback: Any,
    out: Any,
    *,
    elapsed: float,
    tokens: int,
    train_examples: int,
) -> dict[str, Any]:
    """What the training part of a run did (status.json's summary): steps, loss, time, tokens and how
    it ran (backend, device, processes, kernels, attention, packing, checkpointing, peak memory)."""
    import torch

    model = loaded.model
    summary: dict[str, Any] = {
        "steps": callback.steps,
        "total_steps": callback.total_steps,
        "train_loss": round(float(out.training_loss), 5) if out.training_loss is not None else None,
        "runtime_s": round(elapsed, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / elapsed, 1) if tokens else None,
        "train_examples": train_examples,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
        "backend": loaded.backend,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "processes": rk.world_size,
        "strategy": rk.strategy if rk.distributed else None,
        # What the run used: fused kernels, attention (over packed rows: per conversation), checkpointing.
        "kernels": loaded.kernels,
        "attention": loaded.attention,
        "matmul": loaded.matmul,
        "packing": cfg.packing,
        "gradient_checkpointing": (
            ("unsloth" if loaded.backend == "unsloth" else "torch") if cfg.gradient_checkpointing else "off"
        ),
    }
    if loaded.device == "cuda":
        summary["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return summary


def tracking(cfg: TrainConfig, run: RunDir) -> list[str]:
    """`report_to`, offline and inside the run folder: tensorboard event files under tracking/,
    mlflow's file store under mlruns/, trackio's local database under trackio/."""
    import importlib.util

    for name in cfg.report_to:
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"report_to {name!r} needs the {name} package: pip install {name}")
    if "tensorboard" in cfg.report_to:  # transformers 5 reads it from here (older ones: logging_dir, same default)
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.path / "tracking"))
    if "mlflow" in cfg.report_to:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run.path / "mlruns").resolve().as_uri())
    if "trackio" in cfg.report_to:
        os.environ.setdefault("TRACKIO_DIR", str(run.path / "trackio"))
    return list(cfg.report_to)


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
