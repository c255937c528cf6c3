"""The Python API: `Workbench` gathers every use case; each stage adds its service mixin here."""

from __future__ import annotations

from pathlib import Path

from workbench.services.core import CoreService, default_actor
from workbench.store import Store

__all__ = ["Workbench", "default_actor"]


class Workbench(CoreService):
    """`wb = workbench.open("sift.duckdb")`; every CLI command and app page calls these methods."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = Store(self.path)

    def __repr__(self) -> str:
        return f"Workbench({str(self.path)!r})"
