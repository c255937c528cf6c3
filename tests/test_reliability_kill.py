"""Crash atomicity of the stages (issue 10): SIGKILL mid-dedup, mid-redact, mid-freeze and
mid-augment, at every transaction boundary, inside transactions and at random moments.

Promise: after the kill the store opens, its logical dump equals the dump before the operation,
and the operation runs again to the same result as an undisturbed run. Augment saves its work
in batches on purpose (a crash loses at most one batch of answers): for it the promise is that
each parent's outcome lands whole, and a re-run ends where an undisturbed run ends.

`tests/reliability_harness.py` runs the operation in a forked child that SIGKILLs itself at a
named point (or is SIGKILLed from outside after a delay). Budget: `SIFT_KILL_POINTS` statement
points per operation besides every commit boundary (default 3), `SIFT_KILL_TIMED` random-moment
kills (default 2).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tickets import generate_clean, generate_noisy, ticket_row

import workbench
from tests.conftest import ROOT, write
from tests.reliability_figures import record
from workbench.store import Store

EXTRA_POINTS = int(os.environ.get("SIFT_KILL_POINTS", "3"))
TIMED = int(os.environ.get("SIFT_KILL_TIMED", "2"))
FIGURES: dict[str, dict[str, int]] = {}


class Harness:
    """tests/reliability_harness.py in a subprocess: one operation, killed on demand."""

    def __init__(self, op: str, store: Path, *extra: str) -> None:
        cmd = [sys.executable, str(ROOT / "tests" / "reliability_harness.py"), op, str(store), *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the harness died (exit {self.proc.wait()})")
        return line

    def __call__(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def harness() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in made:
        h.close()


def files_of(store: Path) -> list[Path]:
    return [p for p in (store, store.with_name(store.name + ".wal")) if p.exists()]


def snapshot(store: Path, to: Path) -> None:
    to.mkdir(exist_ok=True)
    for p in files_of(store):
        shutil.copy2(p, to / p.name)


def restore(store: Path, snap: Path) -> None:
    for p in files_of(store):
        p.unlink()
    for p in snap.iterdir():
        shutil.copy2(p, store.parent / p.name)


def kill_points(points: list[str]) -> list[str]:
    """Every commit boundary except the end of the last transaction (the operation is done
    then), the first statement of each transaction, and EXTRA_POINTS statements spread over the rest."""
    last = max(int(p[1:].split(".")[0]) for p in points)
    chosen = [p for p in points if p.endswith(".commit") or p.endswith(".s1")]
    chosen += [p for p in points if p.endswith(".committed") and not p.startswith(f"t{last}.")]
    rest = [p for p in points if ".s" in p and p not in chosen]
    if rest and EXTRA_POINTS:
        step = max(1, len(rest) // EXTRA_POINTS)
        chosen += rest[step // 2 :: step][:EXTRA_POINTS]
    return sorted(set(chosen), key=points.index)


def differing(a: dict[str, list], b: dict[str, list]) -> list[str]:
    return sorted(t for t in set(a) | set(b) if a.get(t) != b.get(t))


_VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?Z?"), "<ts>"),
    (re.compile(r"\b(?:dedup|pii|augment|validate)-[0-9a-f]{12}\b"), "<run>"),
    # A run's stats record how long it took: equal runs differ there.
    (re.compile(r'"(seconds|elapsed_s|duration_s)":\s*[0-9.eE+-]+'), r'"\1":<s>'),
]


def normalized(dump: dict[str, list]) -> dict[str, list]:
    """A dump without what differs between two equal runs: times, run ids, and the hash of a
    version's manifest (it covers the creation time)."""

    def norm(table: str, v: Any) -> Any:
        if isinstance(v, datetime.datetime | datetime.date):
            return "<ts>"
        if isinstance(v, str):
            for rx, sub in _VOLATILE:
                v = rx.sub(sub, v)
            if table == "versions":
                v = re.sub(r"\b[0-9a-f]{64}\b", "<sha>", v)
        return v

    return {t: sorted((tuple(norm(t, v) for v in row) for row in rows), key=repr) for t, rows in dump.items()}


def check_kills(
    op: str, store: Path, tmp: Path, harness: list[Harness], *extra: str, same: Any = None
) -> dict[str, int]:
    """Kill `op` at each point and at random moments; after each kill the store equals its
    snapshot, opens, and the operation re-runs to the undisturbed result (`same` picks what of
    the result must match)."""
    h = Harness(op, store, *extra)
    harness.append(h)
    snap = tmp / f"snap-{op}"
    snapshot(store, snap)
    before = Store(store).logical_dump()
    reference = h("list")
    assert reference["ok"], reference
    complete = normalized(Store(store).logical_dump())
    points = kill_points(reference["points"])
    assert any(p.endswith(".commit") for p in points)
    rng = random.Random(10)
    delays = [round(rng.uniform(0.05, 1.0) * reference["seconds"], 3) for _ in range(TIMED)]
    survived = reruns = landed = 0
    for what in [f"point {p}" for p in points] + [f"after {d}" for d in delays]:
        restore(store, snap)
        r = h(what)
        if not r["killed"]:
            assert what.startswith("after"), (what, r)
            continue  # finished before the timed kill: nothing to check
        after = Store(store).logical_dump()  # opens without error
        whole = what.startswith("after") and after != before and normalized(after) == complete
        if whole:
            landed += 1  # killed after its commit (closing the file): the operation landed whole
        else:
            assert not differing(before, after), f"{op} killed at {what}: tables changed {differing(before, after)}"
        assert workbench.open(store).stats().conversations == len(before["conversations"])
        survived += 1
        if whole:
            # It landed whole (checked above against the undisturbed run): there is nothing to re-run,
            # and an operation such as freezing a named version would now rightly refuse to.
            continue
        again = h("list")  # the operation runs again, to the same result
        assert again["ok"], (what, again)
        if same is not None:
            assert same(again["result"]) == same(reference["result"]), what
        reruns += 1
    FIGURES[op] = {
        "kill_points": len(points),
        "timed_kills": TIMED,
        "kills_survived": survived,
        "landed_whole_before_kill": landed,
        "reruns": reruns,
    }
    record(f"SIGKILL mid-{op}", **FIGURES[op], store_unchanged_after_every_kill=True)
    return FIGURES[op]


def import_rows(wb, tmp: Path, rows: list[dict], name: str = "rows.jsonl") -> None:
    wb.import_files([write(tmp / name, "".join(json.dumps(r) + "\n" for r in rows))], actor="loader")


# ---------------------------------------------------------------------------------- the stages


def test_sigkill_mid_dedup(tmp_path: Path, harness: list[Harness]) -> None:
    store = tmp_path / "dedup.duckdb"
    wb = workbench.open(store)
    quiet = dict.fromkeys(("wrong_label", "pii", "broken_structure", "overlong", "eval_leakage"), 0.0)
    pool, _ = generate_noisy(160, seed=7, rates={**quiet, "exact_duplicate": 0.05, "near_duplicate": 0.15})
    import_rows(wb, tmp_path, pool)
    wb.dedup(threshold=0.9, actor="earlier")  # stored signatures and an earlier run's flags are part of the state
    fig = check_kills("dedup", store, tmp_path, harness, same=lambda r: r)
    assert fig["kills_survived"] >= fig["kill_points"]


def test_sigkill_mid_freeze(tmp_path: Path, harness: list[Harness]) -> None:
    store = tmp_path / "freeze.duckdb"
    wb = workbench.open(store)
    import_rows(wb, tmp_path, [ticket_row(item, "openai") for item in generate_clean(120, 5)])
    wb.accept([c["id"] for c in wb.list(limit=1000).conversations][:100], actor="ana")
    wb.freeze("v-before", eval_fraction=0.1, actor="ana")
    fig = check_kills("freeze", store, tmp_path, harness, same=lambda r: (r["train"], r["eval"], r["excluded"]))
    assert fig["kills_survived"] >= fig["kill_points"]
    assert workbench.open(store).verify_version("v-before").ok


def test_sigkill_mid_redact(tmp_path: Path, harness: list[Harness]) -> None:
    pytest.importorskip("presidio_analyzer", reason="PII (sift redact) needs presidio-analyzer")
    store = tmp_path / "redact.duckdb"
    wb = workbench.open(store)
    if not hasattr(wb, "redact"):
        pytest.skip("the PII stage (sift redact) is not here yet")
    quiet = dict.fromkeys(("exact_duplicate", "near_duplicate", "wrong_label", "broken_structure", "overlong"), 0.0)
    pool, truth = generate_noisy(16, seed=9, rates={**quiet, "eval_leakage": 0.0, "pii": 0.5})
    import_rows(wb, tmp_path, pool)
    assert truth["pii_strings"]
    fig = check_kills("redact", store, tmp_path, harness, same=lambda r: (r["conversations_redacted"], r["findings"]))
    assert fig["kills_survived"] >= fig["kill_points"]


def test_sigkill_mid_augment(tmp_path: Path, harness: list[Harness]) -> None:
    """Augment commits per batch of parents by design; each kill leaves whole parents only, and a
    re-run ends with exactly the conversations an undisturbed run makes."""
    from tests.test_augment import Scripted

    srv = Scripted()
    srv.default, srv.delay = "slow", 0.05
    try:
        store = tmp_path / "aug.duckdb"
        wb = workbench.open(store)
        rows = [
            {"messages": [{"role": "user", "content": f"Ticket {i}: the export to bucket {i} fails at night."},
                          {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(6)
        ]  # fmt: skip
        import_rows(wb, tmp_path, rows)
        snap = tmp_path / "snap-augment-0"
        snapshot(store, snap)
        h = Harness("augment", store, "--endpoint", srv.url)
        harness.append(h)
        ref = h("list")
        assert ref["ok"] and ref["result"]["parents"] == 6, ref
        final = outcome(store)
        points = [p for p in ref["points"] if p.endswith((".commit", ".committed"))]
        rng = random.Random(3)
        delays = [round(rng.uniform(0.1, 0.9) * ref["seconds"], 3) for _ in range(TIMED)]
        survived = 0
        for what in [f"point {p}" for p in points[:-1]] + [f"after {d}" for d in delays]:
            restore(store, snap)
            r = h(what)
            if not r["killed"]:
                continue
            partial = outcome(store)
            for parent, made in partial["per_parent"].items():
                assert made == final["per_parent"][parent], (what, parent)  # a parent lands whole or not at all
            assert partial["children"] <= final["children"]
            survived += 1
            again = h("list")
            assert again["ok"], (what, again)
            assert outcome(store) == final, what
        FIGURES["augment"] = {"kill_points": len(points) - 1, "timed_kills": TIMED, "kills_survived": survived}
        record("SIGKILL mid-augment", **FIGURES["augment"], partial_parents_found=0)
        assert survived >= len(points) - 1
    finally:
        srv.stop()


def outcome(store: Path) -> dict[str, Any]:
    """What augment made, without ids of runs or times: per parent its (variation, outcome) pairs."""
    dump = Store(store).logical_dump()
    cols = {t: dump[t] for t in ("augment_children", "augment_rejects")}
    per_parent: dict[str, list] = {}
    for row in cols["augment_children"]:
        per_parent.setdefault(row[1], []).append(("child", row[3], row[0]))
    for row in cols["augment_rejects"]:
        per_parent.setdefault(row[0], []).append(("reject", row[2], row[4]))
    return {
        "per_parent": {k: sorted(v) for k, v in per_parent.items()},
        "children": {row[0] for row in cols["augment_children"]},
        "conversations": sorted(r[0] for r in dump["conversations"]),
    }
