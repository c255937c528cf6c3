"""The Train page's "Quick check (CPU, minutes)" preset, end to end as a new user runs it: the
bundled sample imported into a fresh store, frozen (every conversation not rejected), then
`sift train` with the preset's config, waiting for the run (training + evaluation). Prints the
wall time beside the page's estimate for the same version, and the machine's load average.

    .venv/bin/python bench/run.py bench_train_preset
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "datasets" / "sample"


def main() -> None:
    import workbench
    from workbench.services.train_presets import PRESETS, estimate_seconds

    quick = next(p for p in PRESETS if p.device == "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        wb = workbench.open(Path(tmp) / "bench.duckdb")
        files = sorted(p for p in SAMPLE.iterdir() if p.suffix in (".json", ".jsonl") and p.name != "ground_truth.json")
        wb.import_files(files, actor="bench")
        wb.validate(actor="bench")
        wb.dedup(actor="bench")
        wb.freeze("quick", include="not-rejected", allow_leakage=True, actor="bench")
        v = wb.version_manifest("quick").version
        ts = (v.get("token_stats") or {}).get("train") or {}
        est = estimate_seconds(
            quick.changes,
            train_rows=v["counts"]["train"],
            eval_rows=v["counts"]["eval"],
            mean_tokens=ts.get("mean") or ts.get("p50"),
            device="cpu",
        )
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        r = wb.train("quick", config=quick.changes, wait=True, actor="bench")
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        run = next(x for x in wb.runs().runs if x["run_id"] == r.run_id)
        print(
            "| preset | train / eval rows | steps | estimate | measured wall | state | load average before → after |\n"
            "|---|---|---|---|---|---|---|\n"
            f"| {quick.name} | {v['counts']['train']} / {v['counts']['eval']} | {est['steps']} | "
            f"{est['total_s']} s | {wall:.0f} s | {run['state']} | "
            f"{load_before[0]:.1f} → {load_after[0]:.1f} (2 cores) |"
        )
        print(json.dumps({"estimate": est, "wall_s": round(wall, 1), "metrics": run["metrics"]}, default=str)[:2000])


if __name__ == "__main__":
    main()
