from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
SAMPLE = ROOT / "datasets" / "sample"
# The sample/demo generator lives beside the sample set (datasets/tickets/), outside the product
# packages; datasets/ has no __init__.py, so tests import it as `tickets`.
sys.path.append(str(ROOT / "datasets"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The suite runs on two pytest workers (Makefile: -n 2) on a 2-core machine: one math thread per
# process (and every trainer or server subprocess it starts), so two CPU-bound tests never fight
# over the cores with spinning OpenMP threads (that once made a 40 s training test take 10 min).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def corpora() -> Path:
    if not CORPORA.exists():
        pytest.skip("../shared/corpora is not present")
    return CORPORA


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "sift.duckdb"


@pytest.fixture
def wb(store_path: Path):
    import workbench

    return workbench.open(store_path)


def run_sift(*args: str, store: Path | None = None, env: dict[str, str] | None = None, check: bool = False):
    """The real `sift` CLI in a subprocess."""
    cmd = [sys.executable, "-m", "workbench"]
    if store is not None:
        cmd += ["--store", str(store)]
    e = {**os.environ, **(env or {})}
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=ROOT, env=e, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"sift {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def shown(markdown: str) -> str:
    """What a reader sees of an md_escape'd string: the backslashes before punctuation removed."""
    import re

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)
