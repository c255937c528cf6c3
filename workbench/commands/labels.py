"""Label audit from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from curation.errors import StageError
from curation.stage import SEVERITIES
from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.labels import LabelAudit, LabelFixes


def _label_audit(args: argparse.Namespace) -> int:
    r = open_wb(args).label_audit(
        fields=args.field or None, folds=args.folds, seed=args.seed, severity=args.severity, actor=args.actor
    )

    def human(r: LabelAudit) -> str:
        lines = [f"{r.labelled} of {r.conversations} answers end in labels; {r.flagged} flagged label_suspect"]
        for name, f in r.per_field.items():
            lines.append(
                f"  {name}: {f['suspects']} suspects among {f['rows']} rows "
                f"(out-of-fold agreement {f['oof_accuracy']:.3f}; {len(f['values'])} values)"
            )
        for name, why in r.skipped.items():
            lines.append(f"  {name}: skipped ({why})")
        lines.append("see `sift list --flag label_suspect` and `sift show ID`")
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "label-audit",
        parents=[common],
        help="flag answers whose trailing JSON labels disagree with the rest of the data (confident learning)",
    )
    p.add_argument("--field", action="append", help="label field to audit (repeatable; default: detected)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument(
        "--severity",
        choices=SEVERITIES,
        default="warning",
        help="severity of the label_suspect flags (default warning: a question for review)",
    )
    p.set_defaults(func=_label_audit)
    register_apply(sub, common)


def _label_apply(args: argparse.Namespace) -> int:
    if not args.ids and not args.all:
        raise StageError("label-apply: name conversation ids, or --all for every label_suspect")
    r = open_wb(args).apply_label_suggestions(None if args.all else args.ids, actor=args.actor)

    def human(r: LabelFixes) -> str:
        lines = [f"applied the suggested labels to {r.applied} conversations (a new revision each)"]
        lines += [f"  skipped {cid}: {why}" for cid, why in sorted(r.skipped.items())]
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def register_apply(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "label-apply",
        parents=[common],
        help="set flagged labels to the label audit's suggestion (a new revision per conversation)",
    )
    p.add_argument("ids", nargs="*", help="conversation ids (default: none; see --all)")
    p.add_argument("--all", action="store_true", help="every conversation with a label_suspect flag")
    p.set_defaults(func=_label_apply)
