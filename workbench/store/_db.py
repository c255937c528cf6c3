"""Connections, transactions and migrations for the DuckDB file.

DuckDB lets one process open a file for writing at a time. The app and the CLI must both work on
the same file, so every operation opens a short-lived connection, retries while another process
holds the lock, and closes it again. Each operation runs in one transaction.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from curation.errors import SiftError

LOCK_TIMEOUT_S = float(os.environ.get("SIFT_LOCK_TIMEOUT", "60"))
# How long a process holds back its own new connections while another process waits for the file.
GIVE_WAY_S = float(os.environ.get("SIFT_LOCK_GIVE_WAY", "3"))
WAITING_FRESH_S = 2.0  # a waiter refreshes its marker at least this often


class StoreError(SiftError):
    """A domain error from the store: its message is meant for the user."""


class StoreBusy(StoreError):
    pass


class ConflictError(StoreError):
    pass


class NotFound(StoreError):
    pass


@dataclass(frozen=True)
class Migration:
    """A numbered schema change of one component (`core`, `validate`, `versions`, ...)."""

    component: str
    number: int
    sql: str


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def first(cur: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a result, reading it to the end (DuckDB refuses new work on a
    connection while a result is unfinished)."""
    rows = cur.fetchall()
    return rows[0] if rows else None


def iso(t: Any) -> str | None:
    """A timestamp as ISO text (None stays None)."""
    return t.isoformat() if t is not None else None


def loads(s: str | None) -> Any:
    """A JSON column's value (NULL or empty text is None)."""
    return json.loads(s) if s else None


def records(cur: duckdb.DuckDBPyConnection, **convert: Callable[[Any], Any]) -> list[dict[str, Any]]:
    """The rows of a result as dicts keyed by column name (the SQL's aliases give the keys), each
    value passed through `convert[name]` where given: the one row-to-dict mapping of the store,
    instead of positional `r[N]` lists that drift from their SELECT."""
    names = [d[0] for d in cur.description or ()]
    fns = [convert.get(n) for n in names]
    unknown = set(convert) - set(names)
    if unknown:
        raise KeyError(f"no such column in the result: {sorted(unknown)}")
    return [{n: (f(v) if f else v) for n, f, v in zip(names, fns, row, strict=True)} for row in cur.fetchall()]


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg and ("conflicting" in msg or "could not set lock" in msg)


_KEPT_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()

# DuckDB shares one instance per file among a process's connections; two threads opening the first
# connection at once (two sessions of the app) both try to create it, and one fails ("Unique file
# handle conflict"). Opening and closing a file's connections one thread at a time avoids that.
_OPEN_CLOSE: dict[str, threading.Lock] = {}
_OPEN_CLOSE_GUARD = threading.Lock()
# Migrations run one at a time in this process: two sessions of the app opening a new store at once
# would otherwise both create the same table or sequence, and one fails on a write-write conflict.
_MIGRATE_GUARD = threading.Lock()


def _open_close(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _OPEN_CLOSE_GUARD:
        return _OPEN_CLOSE.setdefault(key, threading.Lock())


@atexit.register
def _release_all() -> None:
    for db in list(_KEPT_OPEN):
        db.release()


class Database:
    """A DuckDB file path plus the way to open it; holds no connection between operations.

    Opening a DuckDB file costs ~50-100 ms (a fresh instance starts its thread pool), which
    dominates a page made of a few point reads. A long-lived process (the app) can set
    `keep_open_s`: the instance then stays open that long after the last operation, so a burst of
    operations opens it once; the file lock is released when the process goes idle.

    A busy app is never idle, so a process that finds the file locked says so: it keeps a marker
    file `<store>.waiting.<pid>` fresh while it retries. Before opening a connection, a process
    that sees another's fresh marker gives way: it lets go of its kept-open instance and opens
    nothing new until the marker goes (at most GIVE_WAY_S), so the waiter gets its turn.
    """

    def __init__(self, path: str | Path, migrations: list[Migration], *, keep_open_s: float = 0.0) -> None:
        self.path = Path(path)
        self._migrations = sorted(migrations, key=lambda m: (m.component, m.number))
        self._migrated = False
        self.keep_open_s = keep_open_s
        self._anchor: duckdb.DuckDBPyConnection | None = None
        self._anchor_lock = threading.Lock()
        self._last_used = 0.0
        self._checked_waiters = 0.0

    def _hold(self) -> None:
        """Keep the instance open until `keep_open_s` passes with no operation."""
        with self._anchor_lock:
            self._last_used = time.monotonic()
            if self._anchor is not None:
                return
            # Another connection to the same file is open in this process: this one shares its
            # instance (DuckDB's instance cache), so it costs no second open.
            with _open_close(self.path):
                self._anchor = duckdb.connect(str(self.path))
            _KEPT_OPEN.add(self)
        threading.Thread(target=self._release_when_idle, name="sift-store-keep-open", daemon=True).start()

    def _release_when_idle(self) -> None:
        while True:
            with self._anchor_lock:
                idle = time.monotonic() - self._last_used
                if self._anchor is None:
                    return  # released already (release(), giving way)
                if idle >= self.keep_open_s:
                    with _open_close(self.path):
                        self._anchor.close()
                    self._anchor = None
                    return
                wait = self.keep_open_s - idle
            time.sleep(max(wait, 0.01))

    def release(self) -> None:
        """Close the kept-open instance now (tests, shutdown)."""
        with self._anchor_lock:
            if self._anchor is not None:
                with _open_close(self.path):
                    self._anchor.close()
                self._anchor = None

    def _marker(self) -> Path:
        return self.path.with_name(f"{self.path.name}.waiting.{os.getpid()}")

    def _others_waiting(self) -> bool:
        mine, now_s = self._marker().name, time.time()
        for p in self.path.parent.glob(glob.escape(self.path.name) + ".waiting.*"):
            try:
                age = now_s - p.stat().st_mtime
            except FileNotFoundError:
                continue
            if p.name != mine and age < WAITING_FRESH_S:
                return True
            if age > 60:  # left by a process that died waiting
                p.unlink(missing_ok=True)
        return False

    def _give_way(self) -> None:
        """If another process waits for the file, stop holding it and wait (bounded) for its turn."""
        if time.monotonic() - self._checked_waiters < 0.05:
            return
        deadline = time.monotonic() + GIVE_WAY_S
        while self._others_waiting() and time.monotonic() < deadline:
            self.release()
            time.sleep(0.02)
        self._checked_waiters = time.monotonic()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self._give_way()
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        delay = 0.02
        marker: Path | None = None
        try:
            while True:
                try:
                    with _open_close(self.path):
                        return duckdb.connect(str(self.path))
                except duckdb.IOException as e:
                    if not _is_lock_error(e):
                        raise StoreError(f"cannot open store {self.path}: {e}") from None
                    if time.monotonic() > deadline:
                        raise StoreBusy(
                            f"store {self.path} is busy: another process kept it locked for "
                            f"{LOCK_TIMEOUT_S:.0f} s; try again"
                        ) from None
                    marker = self._marker()
                    with contextlib.suppress(OSError):
                        marker.touch()  # "I am waiting": the holder gives way (see the class doc)
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 1.5, 0.5)
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)

    def batches(self, sql: str, ids: list[str] | None, batch: int) -> Iterator[list[Any]]:
        """Rows of `sql` (a query over conversations aliased `c`) in batches of `batch`, only the
        conversations in `ids` when given, oldest first."""
        import pyarrow as pa

        with self.connect() as con:
            if ids is not None:
                con.register("_ids", pa.table({"id": ids}))
                sql += " SEMI JOIN _ids ON _ids.id = c.id"
            cur = con.execute(sql + " ORDER BY c.created_at, c.id")
            while rows := cur.fetchmany(batch):
                yield rows

    @contextlib.contextmanager
    def connect(self, within: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reads (and single statements); `within`: the caller's open transaction."""
        if within is not None:
            yield within
            return
        con = self._connect()
        try:
            if self.keep_open_s > 0:
                self._hold()
            if not self._migrated:
                self._migrate(con)
            yield con
        finally:
            with _open_close(self.path):
                con.close()
            if self.keep_open_s > 0:
                self._last_used = time.monotonic()

    @contextlib.contextmanager
    def transaction(
        self, within: duckdb.DuckDBPyConnection | None = None, *, settings: dict[str, str] | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """All statements inside land together or not at all. `within`: a transaction the caller
        already opened; the statements join it, so several store methods can land as one.
        `settings`: DuckDB settings for this transaction, its COMMIT included, restored after."""
        if within is not None:
            yield within
            return
        with self.connect() as con, _settings(con, settings or {}):
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except duckdb.TransactionException as e:
                # Two transactions of this process (two sessions of the app) wrote the same row.
                con.execute("ROLLBACK")
                raise ConflictError(f"another change landed first, nothing was saved: {e}") from None
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except duckdb.TransactionException as e:
                raise ConflictError(f"another change landed first, nothing was saved: {e}") from None

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        with _MIGRATE_GUARD:
            if not self._migrated:
                self._migrate_locked(con)

    def _migrate_locked(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT, number INTEGER, applied_at TIMESTAMP, PRIMARY KEY (component, number))"
        )
        done = set(con.execute("SELECT component, number FROM schema_migrations").fetchall())
        for m in self._migrations:
            if (m.component, m.number) in done:
                continue
            # Each migration lands with the record of it, or not at all.
            con.execute("BEGIN TRANSACTION")
            try:
                for stmt in _split_sql(m.sql):
                    con.execute(stmt)
                con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [m.component, m.number, now()])
                con.execute("COMMIT")
            except duckdb.ConstraintException:
                # Another process applied it between our check and our insert.
                con.execute("ROLLBACK")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self._migrated = True


@contextlib.contextmanager
def _settings(con: duckdb.DuckDBPyConnection, settings: dict[str, str]) -> Iterator[None]:
    before = {k: con.execute("SELECT current_setting(?)", [k]).fetchall()[0][0] for k in settings}
    for k, v in settings.items():
        con.execute(f"SET {k} = '{v}'")
    try:
        yield
    finally:
        for k, v in before.items():
            con.execute(f"SET {k} = '{v}'")


def _split_sql(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
