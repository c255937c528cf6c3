"""Time for the Browse and Review pages to produce a page over a large store: the service call
alone, and the whole page (service calls + render) in Streamlit's AppTest. Baseline in the same
run: the naive page — read the whole table, then slice a page in Python.

    .venv/bin/python bench/run.py bench_ui                               # 1M conversations
    SIFT_BENCH_UI_N=100000 .venv/bin/python bench/run.py bench_ui        # smaller
    SIFT_BENCH_UI_STORE=/tmp/ui1m.duckdb .venv/bin/python bench/run.py bench_ui   # keep/reuse the store

How the store is generated (fast): `tickets.generate_conversations` yields distinct
synthetic support-ticket chats; each 100k chunk is mapped with the importer's own mapper
(`curation.formats.map_rows`) and landed by the store's bulk import (`Store.import_parsed`, Arrow
tables into DuckDB in one transaction) — the same path as `sift import`, minus writing and
re-reading JSONL. ~10 min per 1M on 2 cores. Then 2% get a validation flag, half of those are
bulk-accepted, and a few hundred single decisions and comments from three reviewers are added.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

import workbench
from curation.formats import Row, map_rows

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "datasets"))  # the sample generator, imported as `tickets`

from tickets import generate_conversations  # noqa: E402

PAGES = ROOT / "workbench" / "app_pages"
CHUNK = 100_000


def build_store(path: Path, n: int) -> float:
    """Generate `n` conversations into `path`; returns seconds. Reuses a store that has them."""
    wb = workbench.open(path)
    wb.store.db.keep_open_s = 2.0
    have = wb.stats().conversations
    t = time.perf_counter()
    if have >= n:
        if wb.store.get_setting("review.guide") is None:
            add_review_state(wb, have)
        return time.perf_counter() - t
    if have:
        raise SystemExit(f"{path} has {have} conversations, not {n}: remove it or point SIFT_BENCH_UI_STORE elsewhere")
    gen = generate_conversations(n, seed=1)
    done = 0
    while done < n:
        k = min(CHUNK, n - done)
        rows = [Row(i, i + 1, next(gen)) for i in range(k)]
        pf = map_rows(rows, "openai", Path(f"generated_{done // CHUNK:03d}.jsonl"))
        wb.store.import_parsed(pf, sha256=f"generated-{done}", actor="bench")
        done += k
        print(f"  generated {done:,} / {n:,} ({time.perf_counter() - t:.0f} s)", flush=True)
    add_review_state(wb, n)
    return time.perf_counter() - t


def add_review_state(wb: workbench.Workbench, n: int) -> None:
    # Review state: flags on 2%, half of them bulk-accepted, single decisions and comments.
    flagged = [c["id"] for c in wb.list(limit=max(n // 50, 1), offset=n // 3).conversations]
    wb.store.start_stage_run("bench-validate", "validate", {}, actor="bench")
    flags = [
        {"conversation_id": cid, "revision": 1, "reason": "too_short" if i % 2 else "template_error",
         "severity": "warning" if i % 2 else "error", "message": "generated flag", "details": {"message_index": 1}}
        for i, cid in enumerate(flagged)
    ]  # fmt: skip
    wb.store.replace_flags("validate", "bench-validate", flags)
    f = {"flag": "too_short"}
    wb.bulk_apply(f, "status", status="accepted", expected=wb.bulk_count(f, "status", status="accepted"), actor="lead")
    wb.set_review_guide("# Guide\n\nAccept correct, polite answers with valid label JSON.", actor="lead")
    wb.set_review_tags(["billing", "outage", "needs-fix"], actor="lead")
    for i, c in enumerate(wb.list(status="pending", limit=300, offset=1000).conversations):
        who = ("ana", "bob", "chen")[i % 3]
        if i % 4 == 3:
            wb.comment(c["id"], "generated comment", actor=who)
        else:
            st = "rejected" if i % 4 == 2 else "accepted"
            reason = "bench" if st == "rejected" else None
            wb.decide(c["id"], st, expected_revision=1, expected_status="pending", reason=reason, actor=who)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


CPU: dict[int, list[float]] = {}


def timed(fn: Any, repeat: int) -> list[float]:
    """Wall seconds per call; the process CPU seconds (all threads: the script thread, DuckDB's)
    go to CPU under the same list's id. CPU time is what the page costs on an otherwise idle
    machine; wall time also carries the waits of a machine shared with other work."""
    out, cpu = [], []
    for i in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU[id(out)] = cpu
    return out


def main() -> dict[str, Any]:
    n = int(os.environ.get("SIFT_BENCH_UI_N", "1000000"))
    repeat = int(os.environ.get("SIFT_BENCH_UI_REPEAT", "30"))
    keep = os.environ.get("SIFT_BENCH_UI_STORE")
    tmp = None if keep else tempfile.TemporaryDirectory()
    path = Path(keep) if keep else Path(tmp.name) / "ui.duckdb"  # type: ignore[union-attr]
    build_s = build_store(path, n)
    os.environ["SIFT_STORE"] = str(path)

    # As `make run` does (--browser.gatherUsageStats false): no per-command telemetry.
    os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    from streamlit.testing.v1 import AppTest

    wb = workbench.open(path)
    wb.store.db.keep_open_s = 2.0  # as the app does (see Database.keep_open_s)
    total = wb.stats().conversations
    pages = total // 25
    # Pages spread over the whole table (a deep page costs the most: ORDER BY + OFFSET).
    offsets = [(i * 7919 % pages) * 25 for i in range(repeat)]
    res: dict[str, list[float]] = {}
    res["Browse service: list(limit=25, offset=k), any page"] = timed(
        lambda i: wb.list(limit=25, offset=offsets[i]), repeat
    )
    res["Browse service: first 20 pages"] = timed(lambda i: wb.list(limit=25, offset=(i % 20) * 25), repeat)
    res["Browse service: status=pending, first 20 pages"] = timed(
        lambda i: wb.list(status="pending", limit=25, offset=(i % 20) * 25), repeat
    )
    # Keyset paging (what the Browse page does now): the cursor of a deep page costs what page 1 does.
    with wb.store.db.connect() as con:
        ordered = con.execute("SELECT created_at, id FROM conversations ORDER BY created_at, id").fetchall()
    cursors = [[ordered[o - 1][0].isoformat(), ordered[o - 1][1]] if o else None for o in offsets]
    del ordered
    res["Browse service: keyset list(after=cursor, count_limit=1000), any page"] = timed(
        lambda i: wb.list(limit=25, after=cursors[i], count_limit=1000), repeat
    )
    # Text filters (the token index, store/search.py), one query set per kind of word:
    with wb.store.db.connect() as con:  # present but rare: picked from the store's own vocabulary
        rare_present = [
            r[0]
            for r in con.execute(
                "SELECT token FROM search_tokens WHERE NOT frequent AND hits BETWEEN 2 AND 50 "
                "AND regexp_matches(token, '^[a-z]+$') ORDER BY id LIMIT 5"
            ).fetchall()
        ]
    text_sets = {
        "common words (in every row)": ["replication", "backup", "billing", "query_engine", "priority"],
        "words in 0.7-7% of rows": ["latency", "dashboard", "sa-east-1", "p99", "kafka"],
        "rare words (2-50 rows)": rare_present,
        "no match": ["zqxj", "no-such-token", "qqqq", "xylophone", "kumquat"],
        "phrases and literal _ %": ["kafka sink connector", "max_retries", "50%", "please check", "the replication"],
        # Every word frequent (no postings of its own): the pair's postings narrow it ...
        "phrases of frequent words (pair in ~1% of rows)": [
            "the replication",
            "the connector",
            "engineer will",
            "would help",
            "backup and",
        ],
        # ... unless the pair itself is in over 10% of rows: then the page walk finds matches at once.
        "phrases of frequent words (pair in >10% of rows)": [
            "the query",
            "include the",
            "along with",
            "the output",
            "output of",
        ],
    }
    per_query: dict[str, list[float]] = {}
    for name, qs in text_sets.items():
        xs = res[f"Browse service: text filter, {name}, count_limit=1000"] = timed(
            lambda i, qs=qs: wb.list(text=qs[i % len(qs)], limit=25, count_limit=1000), repeat
        )
        if name.startswith("phrases"):
            for i, x in enumerate(xs):
                per_query.setdefault(qs[i % len(qs)], []).append(x)
    cursor: list[Any] = [None]

    def review_service(i: int) -> None:
        nxt = wb.queue_next({"status": "pending"}, after=cursor[0])
        assert nxt is not None
        cursor[0] = nxt[1]
        wb.count(status="pending", limit=1000)
        wb.show(nxt[0])

    res["Review service: next + count(limit=1000) + show"] = timed(review_service, repeat)
    tcursor: list[Any] = [None]

    def review_text(i: int) -> None:
        f = {"status": "pending", "text": "replication"}
        nxt = wb.queue_next(f, after=tcursor[0])
        tcursor[0] = nxt[1] if nxt else None
        wb.count(**f, limit=1000)
        if nxt:
            wb.show(nxt[0])

    res["Review service: text filter (common word): next + count(limit=1000) + show"] = timed(review_text, repeat)
    rcursor: list[Any] = [None]

    def review_rare(i: int) -> None:
        f = {"status": "pending", "text": text_sets["words in 0.7-7% of rows"][i % 5]}
        nxt = wb.queue_next(f, after=None if i % 5 == 0 else rcursor[0])
        rcursor[0] = nxt[1] if nxt else None
        wb.count(**f, limit=1000)
        if nxt:
            wb.show(nxt[0])

    res["Review service: text filter (words in 0.7-7%): next + count(limit=1000) + show"] = timed(review_rare, repeat)

    # Baseline for the text filter: the plain scan (contains(lower()) over every current revision),
    # bounded count + first page, as the pages ran it before the index.
    from workbench.store.core import filtered_from

    scan: list[float] = []
    scan_cpu: list[float] = []
    for i in range(3):
        c, t = time.process_time(), time.perf_counter()
        base, args = filtered_from(text=text_sets["words in 0.7-7% of rows"][i])
        with wb.store.db.connect() as con:
            con.execute(f"SELECT count(*) FROM (SELECT 1 {base} LIMIT 1001)", args).fetchall()
            con.execute(f"SELECT c.id {base} ORDER BY c.created_at, c.id LIMIT 25", args).fetchall()
        scan.append(time.perf_counter() - t)
        scan_cpu.append(time.process_time() - c)
    res["baseline: text filter by plain scan (bounded count + page), words in 0.7-7%"] = scan
    CPU[id(scan)] = scan_cpu

    browse = AppTest.from_file(str(PAGES / "browse.py"), default_timeout=120).run()
    assert not browse.exception, browse.exception

    def browse_page(i: int) -> None:
        next(b for b in browse.button if "Next" in b.label).click().run()

    res["Browse page (AppTest): Next ▶"] = timed(browse_page, repeat)
    tbrowse = AppTest.from_file(str(PAGES / "browse.py"), default_timeout=120).run()
    next(t for t in tbrowse.text_input if t.label == "Text contains").set_value("latency").run()
    assert not tbrowse.exception, tbrowse.exception
    res["Browse page (AppTest), text filter 'latency': Next ▶"] = timed(
        lambda i: next(b for b in tbrowse.button if "Next" in b.label).click().run(), repeat
    )
    review = AppTest.from_file(str(PAGES / "review.py"), default_timeout=120)
    review.session_state["reviewer"] = "bench"
    review.run()
    assert not review.exception, review.exception

    def review_page(i: int) -> None:
        next(b for b in review.button if "Skip" in b.label).click().run()
        assert not review.exception

    res["Review page (AppTest): Skip → next conversation"] = timed(review_page, repeat)

    # Baseline: the naive page reads every row, then slices one page in Python.
    naive: list[float] = []
    naive_cpu: list[float] = []
    for i in range(3):
        c, t = time.process_time(), time.perf_counter()
        con = duckdb.connect(str(path), read_only=False)
        rows = con.execute(
            "SELECT c.id, c.status, c.revision, r.n_messages, left(r.search_text, 160) FROM conversations c "
            "JOIN revisions r ON r.conversation_id = c.id AND r.revision = c.revision ORDER BY c.created_at, c.id"
        ).fetchall()
        page = rows[offsets[i] : offsets[i] + 25]
        con.close()
        naive.append(time.perf_counter() - t)
        naive_cpu.append(time.process_time() - c)
        assert len(page) == 25
    del rows
    res["baseline: naive page (read all rows, slice in Python)"] = naive
    CPU[id(naive)] = naive_cpu
    load = os.getloadavg()[0]
    if tmp is not None:
        wb.store.db.release()
        tmp.cleanup()

    print(
        f"machine: {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"duckdb {duckdb.__version__} · store {total:,} conversations"
        + (f" (generated in {build_s:.0f} s)" if build_s else " (reused)")
        + f" · load average {load:.1f} at the end"
    )
    print(
        f"\n| what ({repeat} runs each; baseline 3) | wall p50 ms | wall p95 ms | wall max ms | CPU p50 ms | CPU p95 ms |"
    )
    print("|---|---|---|---|---|---|")
    out: dict[str, Any] = {"conversations": total, "load_average": load}
    for k, xs in res.items():
        p50, p95 = statistics.median(xs) * 1000, pct(xs, 0.95) * 1000
        cpu = CPU.get(id(xs), xs)
        c50, c95 = statistics.median(cpu) * 1000, pct(cpu, 0.95) * 1000
        print(f"| {k} | {p50:.0f} | {p95:.0f} | {max(xs) * 1000:.0f} | {c50:.0f} | {c95:.0f} |")
        out[k] = {"p50_ms": p50, "p95_ms": p95, "cpu_p50_ms": c50, "cpu_p95_ms": c95}
    print("\nPer phrase (the calls above, by query): wall median / max ms")
    for q, xs in per_query.items():
        print(f"- {q!r}: {statistics.median(xs) * 1000:.0f} / {max(xs) * 1000:.0f}")
    out["per_phrase_ms"] = {q: statistics.median(xs) * 1000 for q, xs in per_query.items()}
    base = statistics.median(naive)
    for k in ("Browse page (AppTest): Next ▶", "Review page (AppTest): Skip → next conversation"):
        out[k]["speedup_vs_naive_p50"] = base / pct(res[k], 0.95)
        print(
            f"\n{k}: p95 {pct(res[k], 0.95) * 1000:.0f} ms, **{base / pct(res[k], 0.95):.0f}×** faster than the naive page (target p95 ≤ 200 ms)."
        )
    return out


if __name__ == "__main__":
    main()
