"""Long operations in the background: a training run is a subprocess that writes its run folder.

The workbench launches `python -m trainer` in its own session (so closing the CLI or the app
does not stop it), follows it through status.json, and cancels it with SIGTERM (the trainer
stops after the current step and keeps what it saved). A process that vanished without writing a
final state — killed by the out-of-memory killer, say — is reported as failed with its log tail.

A multi-process run is `accelerate launch` of the trainer (trainer/distributed.py). torch's
launcher starts each rank in a session of its own, so signalling the launcher's group would not
reach them directly (it forwards the signal, then kills ranks that take over 30 s). Cancel
therefore signals every rank listed in status.json (rank 0 writes `pids`); they agree on a step,
stop after it, rank 0 saves the adapter, and the launcher exits with them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from trainer.rundir import FINAL, HINTS, log_tail, read_json, utcnow, write_json_atomic

ROOT = Path(__file__).resolve().parent.parent


def trainer_command(manifest: Path, config: Path, out_dir: Path, *, accelerate_config: Path | None = None) -> list[str]:
    args = ["--manifest", str(manifest), "--config", str(config), "--out", str(out_dir)]
    if accelerate_config is not None:
        from trainer.distributed import launch_command

        return launch_command(accelerate_config, args)
    return [sys.executable, "-m", "trainer", *args]


def launch(
    manifest: Path,
    config: Path,
    out_dir: Path,
    *,
    env: dict[str, str] | None = None,
    accelerate_config: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start the trainer in the background (through `accelerate launch` when given its config file);
    its output, every rank's included, goes to process.log in the run folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    e = {**os.environ, **(env or {})}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH", "")) if p)
    e.setdefault("PYTHONUNBUFFERED", "1")
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(out_dir / "process.log", "ab") as log:
        return subprocess.Popen(
            trainer_command(manifest, config, out_dir, accelerate_config=accelerate_config),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            env=e,
            start_new_session=True,
        )


def pid_alive(pid: int | None) -> bool:
    """True while the process runs (a zombie, finished but not reaped, counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            try:
                os.waitpid(pid, os.WNOHANG)  # reap our own child
            except ChildProcessError:
                pass
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return b"trainer" in cmdline  # a recycled pid is not our run
    except (FileNotFoundError, IndexError):
        return sys.platform != "linux"


def read_status(out_dir: Path, pid: int | None = None) -> dict[str, Any]:
    """The run folder's status; a live-looking state whose process is gone becomes `failed`."""
    status = read_json(out_dir / "status.json") or {"state": "queued"}
    if status.get("state") in FINAL:
        return status
    pid = status.get("pid") or pid
    if status.get("state") == "queued" and pid is None:
        return status
    if not pid_alive(pid):
        time.sleep(0.2)  # the trainer may be writing its final state right now
        status = read_json(out_dir / "status.json") or status
        if status.get("state") in FINAL:
            return status
        tail = log_tail(out_dir / "train.log") or log_tail(out_dir / "process.log")
        if (status.get("world_size") or 1) > 1:  # the other ranks' errors are in the launcher's log
            tail += "\n--- process.log (all ranks) ---\n" + log_tail(out_dir / "process.log", 20)
        status.update(
            state="failed",
            finished_at=utcnow(),
            error=status.get("error") or "the trainer process ended without reporting a result",
            hint=HINTS["oom"] if "out of memory" in tail.lower() else HINTS["killed"],
            log_tail=tail,
        )
        write_json_atomic(out_dir / "status.json", status)
    return status


def cancel(out_dir: Path, pid: int | None = None) -> dict[str, Any]:
    """Ask the run to stop (SIGTERM to its process group); a queued run is cancelled at once."""
    status = read_status(out_dir, pid)
    if status.get("state") in FINAL:
        return status
    ranks = [p for p in status.get("pids") or [] if pid_alive(p)]
    if ranks:  # a multi-process run: every rank (rank 0 alone would also do: the ranks agree on the stop)
        for p in ranks:
            _terminate_group(p)
        return {**status, "cancel_requested_at": utcnow()}
    pid = status.get("pid") or pid
    if pid and pid_alive(pid):
        _terminate_group(pid)
        status = {**status, "cancel_requested_at": utcnow()}
        return status
    status.update(state="cancelled", finished_at=utcnow(), message="cancelled before it started")
    write_json_atomic(out_dir / "status.json", status)
    return status


def _terminate_group(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wait(
    out_dir: Path,
    pid: int | None = None,
    *,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
    proc: subprocess.Popen[bytes] | None = None,
) -> dict[str, Any]:
    """Block until the run reaches a final state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            proc = None  # reaped; read_status sees the process gone
        status = read_status(out_dir, pid)
        if status.get("state") in FINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(poll_s)


def read_run_folder(out_dir: Path) -> dict[str, Any]:
    """What a run folder holds, for ingest and for live views: status, eval, curve, samples, log tail."""
    from trainer.rundir import read_jsonl

    return {
        "status": read_json(out_dir / "status.json") or {},
        "config": read_json(out_dir / "config.json"),
        "eval": read_json(out_dir / "eval.json"),
        "curve": read_jsonl(out_dir / "metrics.jsonl"),
        "samples": read_jsonl(out_dir / "samples.jsonl"),
        "log_tail": log_tail(out_dir / "train.log", 40) or log_tail(out_dir / "process.log", 40),
    }


def write_queued(out_dir: Path, run_id: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "status.json", {"state": "queued", "run_id": run_id, "queued_at": utcnow()})


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
