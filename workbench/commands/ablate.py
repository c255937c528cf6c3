"""Attribution from the command line: leave-one-step-out versions and what each step bought."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.ablate import METRICS, STEPS, AblationPlan, Attribution


def _ablate(args: argparse.Namespace) -> int:
    r = open_wb(args).ablate(
        args.version, steps=args.step or None, held_out=args.held_out, dry_run=args.dry_run, actor=args.actor
    )

    def human(r: AblationPlan) -> str:
        verb = "would freeze" if r.dry_run else "froze"
        lines = []
        for a in r.ablations:
            if a.get("skipped"):
                lines.append(f"{a['step']}: skipped ({a['skipped']})")
                continue
            d = a["data"]
            lines.append(
                f"{a['step']}: {verb} {a['version']} ({d['train']} train / {d['eval']} eval; "
                f"{a['added']} rows put back, {a['reverted']} redactions undone)"
            )
        lines.append(f"train each with the same config and seeds as {r.version}; then `sift attribution {r.version}`")
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def _attribution(args: argparse.Namespace) -> int:
    r = open_wb(args).attribution(args.version, metric=args.metric)

    def human(r: Attribution) -> str:
        f = r.full
        lines = [f"{r.version}: {r.metric} {f['mean']} ± {f['sd']} over seeds {f['seeds']} (on {r.scored_on})"]
        if r.other_recipe_runs:
            lines.append(f"  ({r.other_recipe_runs} run(s) of another training recipe left out)")
        for s in r.steps:
            lines.append(
                f"  {s['label']}: bought {s['bought']} ± {s['bought_sd']} (paired seeds {s['paired_seeds']})"
                + (" — clear" if s["clear"] else "")
            )
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ablate",
        parents=[common],
        help="freeze leave-one-step-out versions of a curated version (parent: it) to train and compare",
    )
    p.add_argument("version", help="the curated version")
    p.add_argument("--step", action="append", choices=list(STEPS), help="step to leave out (repeatable; default all)")
    p.add_argument(
        "--held-out", help="an export folder or version whose eval items the versions' rows must not copy (counted)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what each version would hold; freeze nothing")
    p.set_defaults(func=_ablate)
    q = sub.add_parser(
        "attribution",
        parents=[common],
        help="what each curation step bought: the version's runs against its ablations' runs, paired by seed",
    )
    q.add_argument("version", help="the curated version")
    q.add_argument("--metric", choices=METRICS, default="json_field_accuracy", help="default json_field_accuracy")
    q.set_defaults(func=_attribution)
