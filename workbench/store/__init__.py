"""The store: the only package with SQL. One DuckDB file, numbered migrations per component.

Each component (core, and each stage that keeps results) lives in its own module with its own
`MIGRATIONS`; `Store` combines them.
"""

from __future__ import annotations

from pathlib import Path

from workbench.store import augment, core, dedup, pii, review, runs, search, validate, versions
from workbench.store._db import ConflictError, Database, Migration, NotFound, StoreBusy, StoreError
from workbench.store.augment import AugmentStore
from workbench.store.core import STATUSES, CoreStore
from workbench.store.dedup import DedupStore
from workbench.store.pii import PiiStore
from workbench.store.review import ReviewStore
from workbench.store.runs import RunsStore
from workbench.store.validate import ValidateStore
from workbench.store.versions import FrozenVersionError, VersionsStore

__all__ = ["STATUSES", "ConflictError", "FrozenVersionError", "NotFound", "Store", "StoreBusy", "StoreError"]

MIGRATIONS: list[Migration] = [
    *core.MIGRATIONS,
    *versions.MIGRATIONS,
    *review.MIGRATIONS,
    *runs.MIGRATIONS,
    *dedup.MIGRATIONS,
    *validate.MIGRATIONS,
    *pii.MIGRATIONS,
    *augment.MIGRATIONS,
    *search.MIGRATIONS,
]


# A mixin that builds on another derives from it (PiiStore from CoreStore, DedupStore from StageRunStore),
# so it comes before it here; no two mixins define the same name.
class Store(VersionsStore, ReviewStore, RunsStore, DedupStore, ValidateStore, PiiStore, AugmentStore, CoreStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = Database(self.path, MIGRATIONS)
