"""Load the bundled sample data into the store if the store is empty (used by `make run`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import workbench  # noqa: E402

SAMPLE = ROOT / "datasets" / "sample"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=str(workbench.default_store_path()))
    args = ap.parse_args()
    wb = workbench.open(args.store)
    if wb.stats().conversations:
        print(f"{args.store}: already has data, not loading the sample")
        return
    files = sorted(
        p for p in SAMPLE.iterdir() if p.suffix in (".json", ".jsonl", ".parquet") and p.name != "ground_truth.json"
    )
    r = wb.import_files(files, actor="sample-loader", licence="Apache-2.0 (Sift sample data)")
    t = r.totals
    print(f"{args.store}: loaded the sample: {t.imported} conversations, {t.quarantined} quarantined rows")


if __name__ == "__main__":
    main()
