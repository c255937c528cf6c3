"""`sift` subcommands, one module per area; each exposes `register(subparsers, common)`."""

from __future__ import annotations

import argparse

import workbench
from workbench.services import Workbench


def open_wb(args: argparse.Namespace) -> Workbench:
    return workbench.open(args.store)
