"""Sift workbench: the store, the use cases and the front ends (CLI, Streamlit app).

import workbench
wb = workbench.open("sift.duckdb")
wb.import_files(["data.jsonl"])
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench._version import __version__
from workbench.services import Workbench

__all__ = ["Workbench", "__version__", "default_store_path", "open"]


def default_store_path() -> Path:
    return Path(os.environ.get("SIFT_STORE", "sift.duckdb"))


def open(path: str | Path | None = None) -> Workbench:
    """Open (creating if needed) the store at `path`, default `$SIFT_STORE` or ./sift.duckdb."""
    return Workbench(path if path is not None else default_store_path())
