"""The `sift` command: a thin shell over the Workbench API.

Each command prints a human summary, or with `--json` one JSON object for scripts. Domain errors
become one line on stderr and a non-zero exit; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from curation.errors import SiftError

# Modules that add commands: each has `register(subparsers, common)`. Stages add theirs here.
COMMAND_MODULES = [
    "workbench.commands.core",
    "workbench.commands.review",
    "workbench.commands.versions",
    "workbench.commands.train",
    "workbench.commands.dedup",
    "workbench.commands.validate",
    "workbench.commands.augment",
    "workbench.commands.pii",
    "workbench.commands.labels",
    "workbench.commands.ship",
    "workbench.commands.ablate",
    "workbench.commands.endpoints",
]


T = TypeVar("T")


class UsageError(SiftError):
    """A command line that does not parse or does not make sense (exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def common_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    p.add_argument("--store", dest="store_sub", default=None, help=argparse.SUPPRESS)
    return p


def build_parser() -> Parser:
    parser = Parser(prog="sift", description="Sift: curate chat data, freeze versions, train adapters.")
    parser.add_argument("--store", help="DuckDB store file (default $SIFT_STORE or ./sift.duckdb)")
    parser.add_argument("--actor", help="who is acting (default $SIFT_ACTOR or the login name)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    common = common_parent()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def emit(args: argparse.Namespace, result: T, human: Callable[[T], str] | None = None) -> None:
    """Print `result` for a person (`human` gets the typed result) or, with --json, its `to_dict()`."""
    from workbench.services.results import plain

    if args.json:
        print(json.dumps(plain(result), ensure_ascii=False, indent=None, default=str))
    elif human is not None:
        print(human(result))
    else:
        print(json.dumps(plain(result), ensure_ascii=False, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "store_sub", None):
            args.store = args.store_sub
        if not args.command:
            parser.print_help()
            return 2
        result = args.func(args)
        return int(result or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SiftError as e:  # the one place the CLI translates domain errors
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run as `python -m workbench.cli`: use the importable module so its exception classes match.
    from workbench import cli

    sys.exit(cli.main())
