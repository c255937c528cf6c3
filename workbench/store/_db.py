"""Connections, transactions and migrations for the DuckDB file.

DuckDB lets one process open a file for writing at a time. The app and the CLI must both work on
the same file, so every operation opens a short-lived connection, retries while another process
holds the lock, and closes it again. Each operation runs in one transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

LOCK_TIMEOUT_S = float(os.environ.get("SIFT_LOCK_TIMEOUT", "60"))


class StoreError(Exception):
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


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg and ("conflicting" in msg or "could not set lock" in msg)


class Database:
    """A DuckDB file path plus the way to open it; holds no connection between operations."""

    def __init__(self, path: str | Path, migrations: list[Migration]) -> None:
        self.path = Path(path)
        self._migrations = sorted(migrations, key=lambda m: (m.component, m.number))
        self._migrated = False

    def _connect(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as e:
                if not _is_lock_error(e):
                    raise StoreError(f"cannot open store {self.path}: {e}") from None
                if time.monotonic() > deadline:
                    raise StoreBusy(
                        f"store {self.path} is busy: another process kept it locked for "
                        f"{LOCK_TIMEOUT_S:.0f} s; try again"
                    ) from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 1.5, 0.5)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reads (and single statements)."""
        con = self._connect()
        try:
            if not self._migrated:
                self._migrate(con)
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All statements inside land together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except duckdb.TransactionException as e:
                raise ConflictError(f"another change landed first, nothing was saved: {e}") from None

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
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
                con.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", [m.component, m.number, now()]
                )
                con.execute("COMMIT")
            except duckdb.ConstraintException:
                # Another process applied it between our check and our insert.
                con.execute("ROLLBACK")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        self._migrated = True


def _split_sql(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]
