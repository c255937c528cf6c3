"""A process that runs one store operation and dies by SIGKILL at a chosen point (issue 10).

    python tests/reliability_harness.py OP STORE [--endpoint URL]

It loads what OP needs once (the PII analyzer takes ~20 s), then answers commands on stdin, one
JSON line each on stdout. For each command it forks a child that runs OP on STORE:

    list            run to the end; reply with every kill point passed, in order
    point NAME      SIGKILL itself (no cleanup, no atexit) when it reaches point NAME
    after SECONDS   the harness SIGKILLs the child after SECONDS, wherever it is
    quit

Kill points are the store's transaction boundaries, counted in the child: `tN.sK` right after
statement K of transaction N, `tN.commit` just before its COMMIT, `tN.committed` right after it.
The harness never opens the store itself, so a fork never inherits a DuckDB instance.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import workbench  # noqa: E402
from workbench.store._db import Database  # noqa: E402


class _Con:
    """A connection that reports each statement as a kill point."""

    def __init__(self, con: Any, point: Callable[[str], None], tx: int) -> None:
        self._con, self._point, self._tx, self._n = con, point, tx, 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        out = self._con.execute(*args, **kwargs)
        self._n += 1
        self._point(f"t{self._tx}.s{self._n}")
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def instrument(kill_at: str | None, passed: list[str]) -> None:
    """Patch `Database.transaction` in this (child) process to record and act on kill points."""
    original = Database.transaction
    count = [0]

    def point(name: str) -> None:
        passed.append(name)
        if name == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    @contextlib.contextmanager
    def transaction(self: Database, within: Any = None) -> Iterator[Any]:
        if within is not None:  # joins the caller's transaction: no boundary of its own
            yield within
            return
        count[0] += 1
        n = count[0]
        with original(self) as con:
            yield _Con(con, point, n)
            point(f"t{n}.commit")
        point(f"t{n}.committed")

    Database.transaction = transaction  # type: ignore[method-assign]


def operation(op: str, store: Path, endpoint: str | None) -> Callable[[], Any]:
    wb = workbench.open(store)
    if op == "dedup":
        return lambda: wb.dedup(threshold=0.7, actor="kill-test")
    if op == "redact":
        return lambda: wb.redact(actor="kill-test")
    if op == "freeze":
        return lambda: wb.freeze("v-kill", eval_fraction=0.2, seed=3, actor="kill-test")
    if op == "augment":
        from workbench.services.augment import _Run

        _Run.BATCH, _Run.FLUSH_S = 3, 0.1  # small batches: more commits to kill around
        return lambda: wb.augment(
            endpoint=endpoint, model="scripted", n=2, backoff_s=0.01, check_pii=False, concurrency=2, actor="kill-test"
        )
    raise SystemExit(f"unknown operation {op!r}")


def warm(op: str, store: Path, endpoint: str | None) -> None:
    """Run OP once on a throwaway copy of the store, so that every lazy import, model load and
    first-call cost is paid here once and not again in each child. Every connection is closed
    afterwards: a fork then inherits no DuckDB instance."""
    with tempfile.TemporaryDirectory(prefix="sift-warm-") as tmp:
        for p in (store, store.with_name(store.name + ".wal")):
            if p.exists():
                shutil.copy2(p, Path(tmp) / p.name)
        operation(op, Path(tmp) / store.name, endpoint)()


def run_child(fn: Callable[[], Any], kill_at: str | None, report: Path) -> None:
    passed: list[str] = []
    instrument(kill_at, passed)
    try:
        from workbench.services.results import plain

        result: Any = fn()
        out = {"ok": True, "result": plain(result), "points": passed}  # a typed result as its --json dict
    except BaseException as e:  # reported to the test, which decides
        out = {"ok": False, "error": f"{type(e).__name__}: {e}", "points": passed}
    report.write_text(json.dumps(out, default=str))


def main() -> None:
    op, store = sys.argv[1], Path(sys.argv[2])
    endpoint = sys.argv[sys.argv.index("--endpoint") + 1] if "--endpoint" in sys.argv else None
    warm(op, store, endpoint)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "quit":
            return
        report = Path(tempfile.mkstemp(prefix="sift-kill-", suffix=".json")[1])
        fn = operation(op, store, endpoint)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_child(fn, arg if cmd == "point" else None, report)
            except BaseException:
                code = 1
            os._exit(code)
        done = (0, 0)
        if cmd == "after":
            deadline = started + float(arg)
            while time.monotonic() < deadline and done == (0, 0):
                done = os.waitpid(pid, os.WNOHANG)
                time.sleep(0.005)
            if done == (0, 0):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0) if done == (0, 0) else done
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        text = report.read_text()
        report.unlink()
        reply = json.loads(text) if text else {}
        reply.update(killed=killed, seconds=round(time.monotonic() - started, 3))
        print(json.dumps(reply, default=str), flush=True)


if __name__ == "__main__":
    main()
