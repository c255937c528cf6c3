"""`sift validate`: the validation gate from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workbench.cli import UsageError, emit
from workbench.commands import open_wb
from workbench.services.validate import ValidationSummary


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rvalidating: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _human(r: ValidationSummary, max_seq_len: int) -> str:
    t = r.tokens
    rechecked = r.rechecked or 0
    lines = [
        f"{r.checked} conversations validated with {r.model} (template {r.template_sha256[:12]}, "
        f"max_seq_len {max_seq_len}, system prompt: {r.system_prompt or 'keep'}): {r.passed} passed; {rechecked} rendered now, "
        f"{r.checked - rechecked} from earlier runs",
    ]
    if r.flagged:
        lines.append("errors (block freezing): " + ", ".join(f"{k} {v}" for k, v in r.flagged.items()))
    if r.warnings:
        lines.append("warnings: " + ", ".join(f"{k} {v}" for k, v in r.warnings.items()))
    lines.append(
        f"tokens: total {t.total} · p50 {t.p50} · p90 {t.p90} · p99 {t.p99} · max {t.max}; "
        f"{r.over_max_seq_len} over max_seq_len"
    )
    if r.over_max_seq_len:
        c = r.cutoff
        lines.append(
            "cutoff preview, rows that lose their last answer: "
            f"drop the row {c.drop_row.lose_last_answer}, "
            f"drop trailing turns {c.drop_trailing_turns.lose_last_answer}, "
            f"cut tokens {c.truncate.lose_last_answer} ({c.truncate.cut_mid_answer} cut mid-answer)"
        )
    if r.flagged or r.warnings:
        lines.append("see `sift list --flag REASON` and `sift show ID`")
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> int:
    from curation.validate import REASONS

    severity: dict[str, str] = {}
    for reason in args.warn or []:
        if reason not in REASONS:
            raise UsageError(f"unknown reason {reason!r} for --warn (known: {', '.join(REASONS)})")
        severity[reason] = "warning"
    r = open_wb(args).validate(
        model=args.model,
        max_seq_len=args.max_seq_len,
        severity=severity,
        actor=args.actor,
        progress=None if args.json else _progress,
        system_prompt=args.system_prompt,
    )
    if args.json:
        emit(args, r.contract())
    else:
        emit(args, r, lambda r: _human(r, args.max_seq_len))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "validate",
        parents=[common],
        help="check structure, render with the model's chat template, check the loss mask and token lengths",
    )
    p.add_argument("--model", help="Hugging Face id or local folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--max-seq-len", type=int, default=2048, help="the trainer's maximum sequence length (default 2048)")
    p.add_argument(
        "--warn",
        action="append",
        metavar="REASON",
        help="downgrade a check to a warning that does not block freezing (repeatable), e.g. over_max_seq_len",
    )
    p.add_argument(
        "--system-prompt",
        choices=("keep", "fold", "drop"),
        default="keep",
        help="a leading system prompt: keep it (default), fold it into the first user turn (templates that "
        "refuse a system turn, e.g. Gemma), or drop it; stored with the run and every version frozen on it, "
        "and the trainer renders the same way",
    )
    p.set_defaults(func=_validate)
