"""The sweep driver: trains a sweep's queued runs one at a time (one GPU, or the CPU, at a time).

    python -m workbench.sweep RUN_DIR...

Each RUN_DIR was prepared by `sift sweep` (export/, config.input.json, status.json `queued`). A run
cancelled while queued (`sift cancel`) is skipped; the driver waits for each trainer to end before it
starts the next. It never opens the store: `sift runs` ingests each run from its folder as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trainer.rundir import read_json
from workbench import jobs


def run_sweep(dirs: list[Path], *, env: dict[str, str] | None = None) -> None:
    for d in dirs:
        status = read_json(d / "status.json") or {}
        if status.get("state") != "queued" or status.get("pid"):
            continue  # cancelled (or started) meanwhile
        proc = jobs.launch(d / "export" / "manifest.json", d / "config.input.json", d, env=env)
        proc.wait()
        jobs.read_status(d, proc.pid)  # a trainer that died without a word is marked failed now


def launch_sweep(dirs: list[Path], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The driver in its own session (it outlives the CLI), its output in the first run's folder."""
    e = {**os.environ, **(env or {})}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(jobs.ROOT), e.get("PYTHONPATH", "")) if p)
    with open(dirs[0] / "sweep.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "workbench.sweep", *map(str, dirs)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(jobs.ROOT),
            env=e,
            start_new_session=True,
        )


if __name__ == "__main__":
    run_sweep([Path(a) for a in sys.argv[1:]])
