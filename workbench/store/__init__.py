"""The store: the only package with SQL. One DuckDB file, numbered migrations per component.

Each component (core, and each stage that keeps results) lives in its own module with its own
`MIGRATIONS`; `Store` combines them.
"""

from __future__ import annotations

from pathlib import Path

from workbench.store import core
from workbench.store._db import ConflictError, Database, Migration, NotFound, StoreBusy, StoreError
from workbench.store.core import STATUSES, CoreStore

__all__ = ["STATUSES", "ConflictError", "NotFound", "Store", "StoreBusy", "StoreError"]

MIGRATIONS: list[Migration] = [*core.MIGRATIONS]


class Store(CoreStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = Database(self.path, MIGRATIONS)
