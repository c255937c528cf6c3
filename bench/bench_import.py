"""Import speed: Sift's bulk import vs a naive json.loads + one INSERT per row, same data, same run.

.venv/bin/python bench/run.py bench_import          # 200k conversations (default)
SIFT_BENCH_IMPORT_N=20000 .venv/bin/python bench/run.py bench_import
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import duckdb

import workbench
from curation.tickets import generate_conversations


def naive_import(path: Path, db: Path) -> int:
    """The baseline: parse each line and INSERT it on its own, as a quick script would."""
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE conversations (id TEXT PRIMARY KEY, content TEXT)")
    n = 0
    import hashlib

    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            content = json.dumps(row["messages"], sort_keys=True)
            cid = hashlib.sha256(content.encode()).hexdigest()[:16]
            con.execute("INSERT INTO conversations VALUES (?, ?) ON CONFLICT DO NOTHING", [cid, content])
            n += 1
    con.close()
    return n


def main() -> dict[str, float]:
    n = int(os.environ.get("SIFT_BENCH_IMPORT_N", "200000"))
    naive_n = int(os.environ.get("SIFT_BENCH_IMPORT_NAIVE_N", str(min(n, 20000))))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = tmp / "tickets.jsonl"
        with open(data, "w", encoding="utf-8") as f:
            for row in generate_conversations(n, seed=1):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        sample = tmp / "sample.jsonl"
        with open(data, encoding="utf-8") as src, open(sample, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= naive_n:
                    break
                dst.write(line)
        # The baseline on a prefix (a full run takes many minutes); rates are per row.
        t = time.perf_counter()
        naive_import(sample, tmp / "naive.duckdb")
        naive_s = time.perf_counter() - t
        naive_rate = naive_n / naive_s

        wb = workbench.open(tmp / "sift.duckdb")
        t = time.perf_counter()
        r = wb.import_files([data], actor="bench")
        sift_s = time.perf_counter() - t
        sift_rate = n / sift_s
        assert r["totals"]["rows"] == n
    ratio = sift_rate / naive_rate
    print(
        f"machine: {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · duckdb {duckdb.__version__}"
    )
    print("| import | rows | seconds | rows/s |")
    print("|---|---|---|---|")
    print(f"| naive: json.loads + one INSERT per row | {naive_n:,} | {naive_s:.1f} | {naive_rate:,.0f} |")
    print(
        f"| Sift `import_files` (parse, map, hash, Arrow bulk insert, provenance) | {n:,} | {sift_s:.1f} | {sift_rate:,.0f} |"
    )
    print(f"\nSift is **{ratio:.1f}×** the naive baseline's rows/s (target ≥ 10×).")
    return {"naive_rows_per_s": naive_rate, "sift_rows_per_s": sift_rate, "ratio": ratio}


if __name__ == "__main__":
    main()
