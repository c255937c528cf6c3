"""The regression gate and sweeps from the command line (issue 20)."""

from __future__ import annotations

import argparse
from typing import Any

from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.ship import GateResult, SweepPlan


def _gate(args: argparse.Namespace) -> int:
    r = open_wb(args).gate_run(args.run, against=args.against, threshold=args.threshold)

    def human(r: GateResult) -> str:
        g = r.gate or {}
        return (
            f"{r.run_id}: {g.get('verdict')} against {g.get('against')} — {g.get('regressed')} of "
            f"{g.get('cases')} cases regressed (threshold {g.get('threshold')})"
        )

    emit(args, r, human)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    r = open_wb(args).sweep(
        args.version,
        args.grid,
        config_file=args.config,
        max_steps=args.max_steps,
        eval_limit=args.eval_limit,
        wait=args.wait,
        actor=args.actor,
    )

    def human(r: SweepPlan) -> str:
        lines = [f"sweep {r.sweep_id}: {len(r.runs)} runs of {r.version}, trained one at a time"]
        lines += [f"  {x['run_id']}  {x['params']}" for x in r.runs]
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("gate", parents=[common], help="recompute a run's regression gate (ship / hold)")
    p.add_argument("run")
    p.add_argument("--against", help="'base' or the run id of the run in production (default: the run's config)")
    p.add_argument("--threshold", type=float, help="hold when more than this fraction of cases regress (0.02)")
    p.set_defaults(func=_gate)

    p = sub.add_parser("sweep", parents=[common], help="train a grid of configs on a version, one run at a time")
    p.add_argument("version", help="a frozen version's name (or the path of an exported version's folder)")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="FIELD=V1,V2",
        help="a trainer config field and its values; repeat for more fields (the runs are the product)",
    )
    p.add_argument("--config", help="JSON or TOML file of the settings every run shares")
    p.add_argument("--max-steps", type=int, help="stop each run after N optimizer steps")
    p.add_argument("--eval-limit", type=int, help="generate for at most K eval conversations")
    p.add_argument("--wait", action="store_true", help="train the runs here, one after the other, and wait")
    p.set_defaults(func=_sweep)
