"""Train, follow, cancel, compare and export adapters from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from trainer.config import STRATEGIES
from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.train import ImportedRun, RunComparison, RunList


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _train(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    r = wb.train(
        args.version,
        config_file=args.config,
        max_steps=args.max_steps,
        eval_limit=args.eval_limit,
        base_model=args.base_model,
        gpus=args.gpus,
        cpu_processes=args.cpu_processes,
        strategy=args.strategy,
        wait=args.wait,
        actor=args.actor,
    )
    emit(args, r, lambda r: f"run {r.run_id} {r.state} (folder {r.out_dir}); follow it with `sift runs`")
    return 0 if r.state != "failed" else 1


def _runs(args: argparse.Namespace) -> int:
    r = open_wb(args).runs(version=args.version)

    def human(r: RunList) -> str:
        lines = []
        for x in r.runs:
            m = x["metrics"] or {}
            tuned, base = m.get("tuned") or {}, m.get("base") or {}
            progress = f"{x['step'] or 0}/{x['total_steps'] or '?'}"
            lines.append(
                f"{x['run_id']}  {x['version']:<12} {x['state']:<9} step {progress:<9} "
                f"eval loss {_fmt(m.get('eval_loss'))}  rouge-L base {_fmt(base.get('rouge_l'))} → tuned {_fmt(tuned.get('rouge_l'))}"
            )
            if x.get("gate"):
                g = x["gate"]
                lines[-1] += f"  gate {g['verdict']} ({g['regressed']}/{g['cases']} vs {g['against']})"
            if x["state"] == "failed" and x.get("error"):
                lines.append(f"    {x['error'][:200]}" + (f"\n    hint: {x['hint']}" if x.get("hint") else ""))
        return "\n".join(lines) or "no runs yet (start one with `sift train VERSION`)"

    emit(args, r, human)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    r = open_wb(args).cancel_run(args.run)
    emit(
        args,
        r,
        lambda r: f"run {r.run_id}: " + ("stopping after the current step" if r.cancel_requested else str(r.state)),
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    r = open_wb(args).compare_runs(args.runs, regressions_only=args.regressions)

    def human(r: RunComparison) -> str:
        keys = ["eval_loss", "perplexity", "exact_match", "token_f1", "rouge_l", "json_field_accuracy"]
        lines = ["run".ljust(28) + "version".ljust(14) + "".join(k[:12].ljust(13) for k in keys)]
        for x in r.runs:
            m = x["metrics"] or {}
            tuned = m.get("tuned") or {}
            vals = [m.get("eval_loss"), m.get("perplexity"), *[tuned.get(k) for k in keys[2:]]]
            lines.append(x["run_id"].ljust(28) + str(x["version"]).ljust(14) + "".join(_fmt(v).ljust(13) for v in vals))
        for x in r.runs:  # tool-call turns of the eval split, scored on the calls
            tc = (x["metrics"] or {}).get("tool_calls")
            if tc:
                b, t = tc.get("base") or {}, tc.get("tuned") or {}
                lines.append(
                    f"{x['run_id']} tool calls ({tc.get('n')}), base → tuned: "
                    + ", ".join(
                        f"{label} {_fmt(b.get(k))} → {_fmt(t.get(k))}"
                        for k, label in (
                            ("tool_name_accuracy", "name"),
                            ("tool_args_exact", "arguments exact"),
                            ("tool_arg_accuracy", "per argument"),
                        )
                    )
                )
        n_reg = sum(1 for e in r.examples if e["regressed_in"])
        lines.append(f"{len(r.examples)} eval examples, {n_reg} with a regression against the base model")
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def _import_run(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    out: list[ImportedRun] = [wb.import_run(d, actor=args.actor) for d in args.run_dirs]
    emit(
        args,
        {"runs": out},
        lambda r: "\n".join(f"imported {x.source} as run {x.run_id} ({x.version}, {x.state})" for x in r["runs"]),
    )
    return 0


def _export_adapter(args: argparse.Namespace) -> int:
    r = open_wb(args).export_adapter(args.run, args.out, merge=args.merge, force=args.force)
    emit(args, r, lambda r: f"{'merged model' if r.merged else 'adapter'} of {r.run_id} written to {r.out_dir}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", parents=[common], help="train a LoRA adapter on a frozen version (in the background)")
    p.add_argument("version", help="a frozen version's name (or the path of an exported version's folder)")
    p.add_argument("--config", help="JSON or TOML file of trainer settings (see trainer/config.py)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--eval-limit", type=int, help="generate for at most K eval conversations")
    p.add_argument("--base-model", help="Hugging Face id or local folder (default: the embedded SmolLM2-135M-Instruct)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--gpus", type=int, metavar="N", help="train on N CUDA GPUs, one process each, through `accelerate launch`"
    )
    where.add_argument(
        "--cpu-processes",
        type=int,
        metavar="N",
        help="train in N CPU processes over gloo (no GPU; checks a multi-process setup, e.g. in CI)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="how several processes share the work (default ddp): ddp = QLoRA, one 4-bit model per GPU; "
        "fsdp = LoRA over a sharded bf16 base; deepspeed-* need the deepspeed package. unsloth: one GPU only",
    )
    p.add_argument("--wait", action="store_true", help="wait for the run to end (and ingest its results)")
    p.set_defaults(func=_train)

    p = sub.add_parser("runs", parents=[common], help="training runs with state and metrics")
    p.add_argument("--version", help="only runs of this version")
    p.set_defaults(func=_runs)

    p = sub.add_parser("cancel", parents=[common], help="stop a training run (keeps what it saved)")
    p.add_argument("run")
    p.set_defaults(func=_cancel)

    p = sub.add_parser("compare", parents=[common], help="compare runs: metrics and per-example answers")
    p.add_argument("runs", nargs="+")
    p.add_argument("--regressions", action="store_true", help="only examples where a run is worse than the base")
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "import-run", parents=[common], help="register run folders trained elsewhere (python -m trainer on a GPU box)"
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders written by `python -m trainer --out`")
    p.set_defaults(func=_import_run)

    p = sub.add_parser("export-adapter", parents=[common], help="write a run's adapter (or the merged model)")
    p.add_argument("run")
    p.add_argument("--out", required=True, help="folder to write (must be empty or new)")
    p.add_argument("--merge", action="store_true", help="merge the adapter into the base model (merge_and_unload)")
    p.add_argument(
        "--force", action="store_true", help="export a run the regression gate holds (the model card says so)"
    )
    p.set_defaults(func=_export_adapter)
