"""Import speed and memory: Sift's streamed import vs the same schema built by DuckDB SQL alone.

The anchor is the strongest tool for the same work: DuckDB's own `read_json` filling the same
tables Sift writes (conversations, revisions with search text and sha256, one provenance row per
source row, the text search index of store/search.py built by the same SQL in one pass, with the
same indexes), in one transaction. Both run in their own process on the same
file, in the same run; time, peak RSS and the load average are reported.

.venv/bin/python bench/run.py bench_import                      # 10k and 100k (default)
SIFT_BENCH_IMPORT_SIZES=10000,100000,1000000 .venv/bin/python bench/run.py bench_import
SIFT_BENCH_DATA=/tmp/sift24 reuses tickets_<n>.jsonl files there (generated once if missing).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT / "datasets"))  # the sample generator, imported as `tickets`

SQL_ANCHOR = r"""
import sys, time, duckdb, workbench
path, db = sys.argv[1], sys.argv[2]
_wb = workbench.open(db); _wb.stats(); _wb.store.db.release()  # the same migrated schema and indexes
con = duckdb.connect(db)
t = time.perf_counter()
con.execute("BEGIN TRANSACTION")
con.execute('''CREATE TEMP TABLE _s AS
  SELECT line, c AS content, sha256(c) AS h, st, n FROM (
    SELECT row_number() OVER () AS line,
           to_json({'messages': messages, 'tools': []::JSON[]})::VARCHAR AS c,
           array_to_string(list_transform(messages, lambda m: m.content), chr(10)) AS st,
           len(messages) AS n
    FROM read_json(?, format = 'newline_delimited',
                   columns = {'messages': 'STRUCT(content VARCHAR, role VARCHAR)[]'}))''', [path])
con.execute('''CREATE TEMP TABLE _n AS SELECT DISTINCT ON (h) * FROM _s
  WHERE left(h, 16) NOT IN (SELECT id FROM conversations) ORDER BY h, line''')
con.execute("INSERT INTO conversations SELECT left(h, 16), 'pending', 1, left(h, 16), '{}', [], now(), now() FROM _n")
con.execute("INSERT INTO revisions SELECT left(h, 16), 1, content, h, st, n, 'import', 'bench', NULL, NULL, now() FROM _n")
# The same text index Sift builds (store/search.py), in one pass over the new rows.
from workbench.store.search import index_sql, postings_table, store_postings
con.execute(postings_table())
for stmt in index_sql("(SELECT left(h, 16) AS conversation_id, 1 AS revision, now()::TIMESTAMP AS created_at, "
                      "st AS search_text FROM _n)", "_search_new") + store_postings():
    con.execute(stmt)
con.execute('''INSERT INTO provenance SELECT left(h, 16), 1,
  json_object('format', 'openai', 'kind', 'import', 'line', line, 'source', 'tickets.jsonl'), now() FROM _s''')
con.execute("COMMIT")
import resource; ru = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
"""

SIFT = r"""
import sys, time, workbench
path, db = sys.argv[1], sys.argv[2]
wb = workbench.open(db)
wb.stats(); wb.store.db.release()
t = time.perf_counter()
r = wb.import_files([path], actor="bench")
dt = time.perf_counter() - t
assert r.totals.imported + r.totals.already_present + r.totals.quarantined == r.totals.rows
import resource; ru = resource.getrusage(resource.RUSAGE_SELF)
print(dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
"""


def data_file(n: int, folder: Path) -> Path:
    path = folder / f"tickets_{n}.jsonl"
    if not path.exists():
        from tickets import generate_conversations

        with open(path, "w", encoding="utf-8") as f:
            for row in generate_conversations(n, seed=1):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def run_child(code: str, path: Path, db: Path) -> tuple[float, float, float]:
    """(wall seconds of the import inside the child, the child's CPU seconds, its peak RSS in MB)."""
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(db)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    wall, cpu, rss = (float(x) for x in out.stdout.strip().splitlines()[-1].split())
    return wall, cpu, rss


def main() -> dict[str, float]:
    sizes = [int(x) for x in os.environ.get("SIFT_BENCH_IMPORT_SIZES", "10000,100000").split(",")]
    folder = Path(os.environ.get("SIFT_BENCH_DATA") or tempfile.mkdtemp(prefix="sift-bench-import-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"duckdb {duckdb.__version__}"
    )
    print(
        "| rows | DuckDB SQL, same schema: wall s (CPU s) | Sift import: wall s (CPU s) | Sift / SQL wall "
        "| Sift / SQL CPU | peak RSS MB: SQL / Sift | load avg (1 min) |"
    )
    print("|---|---|---|---|---|---|---|")
    out: dict[str, float] = {}
    times: list[tuple[int, float]] = []
    for n in sorted(sizes):
        path = data_file(n, folder)
        with tempfile.TemporaryDirectory() as d:
            load0 = os.getloadavg()[0]
            sql_s, sql_cpu, sql_rss = run_child(SQL_ANCHOR, path, Path(d) / "sql.duckdb")
            sift_s, sift_cpu, rss = run_child(SIFT, path, Path(d) / "sift.duckdb")
        load = os.getloadavg()[0]
        print(
            f"| {n:,} | {sql_s:.2f} ({sql_cpu:.2f}) | {sift_s:.2f} ({sift_cpu:.2f}) | {sift_s / sql_s:.2f}× "
            f"| {sift_cpu / sql_cpu:.2f}× | {sql_rss:,.0f} / {rss:,.0f} | {load0:.2f} → {load:.2f} |"
        )
        out[f"ratio_{n}"] = sift_s / sql_s
        out[f"rss_mb_{n}"] = rss
        times.append((n, sift_s))
    if len(times) > 1:
        (n0, t0), (n1, t1) = times[0], times[-1]
        exp = math.log(t1 / t0) / math.log(n1 / n0)
        print(f"\nSift time exponent {n0:,} → {n1:,}: {exp:.2f} (1.0 = linear).")
        out["exponent"] = exp
    print("Each side runs in its own process; CPU s is that process's user + system time (the whole")
    print("process, start-up included), peak RSS its ru_maxrss. Wall times are of the import alone.")
    return out


if __name__ == "__main__":
    main()
