"""The Python API: `Workbench` gathers every use case; each stage adds its service mixin here."""

from __future__ import annotations

from pathlib import Path

from workbench.services.ablate import AblationService
from workbench.services.augment import AugmentService
from workbench.services.core import CoreService, default_actor
from workbench.services.dedup import DedupService
from workbench.services.home import HomeService
from workbench.services.labels import LabelsService
from workbench.services.pii import PiiService
from workbench.services.review import ReviewService
from workbench.services.ship import ShipService
from workbench.services.train import TrainService
from workbench.services.validate import ValidateService
from workbench.services.versions import VersionsService
from workbench.store import Store

__all__ = ["Workbench", "default_actor"]


# A mixin that builds on another derives from it (ShipService from TrainService, AblationService
# from VersionsService), so it comes before it here; no two mixins define the same name.
class Workbench(
    CoreService,
    ReviewService,
    ShipService,
    TrainService,
    DedupService,
    ValidateService,
    PiiService,
    AugmentService,
    LabelsService,
    HomeService,
    AblationService,
    VersionsService,
):
    """`wb = workbench.open("sift.duckdb")`; every CLI command and app page calls these methods."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = Store(self.path)

    def __repr__(self) -> str:
        return f"Workbench({str(self.path)!r})"
