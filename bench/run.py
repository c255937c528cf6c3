"""`make bench`: run every benchmark; each prints its markdown table (copy into BENCHMARKS.md)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCHES = [
    "bench.bench_import",
    "bench.bench_validate",
    "bench.bench_ui",
    "bench.bench_pii",
    "bench.bench_pii_sample",
    "bench.bench_pii_unlabelled",
    "bench.bench_augment",
    "bench.bench_train",
    "bench.bench_train_multi",
    "bench.bench_fp8_numerics",
    "bench.bench_dedup",
    "bench.bench_labels",
    "bench.bench_masks",
    "bench.bench_train_preset",
]


def main() -> None:
    only = sys.argv[1:]
    for name in BENCHES:
        if only and not any(o in name for o in only):
            continue
        print(f"\n## {name}\n", flush=True)
        importlib.import_module(name).main()


if __name__ == "__main__":
    main()
