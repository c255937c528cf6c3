"""The `--json` contract across a refactor: run one CLI sequence with --json on two source trees
(each on its own copy of one store made from the bundled sample) and compare the outputs, the
stored flags and stage runs, and an exported manifest, after masking what differs from run to run
(run ids, times, durations, paths). Key order counts.

    python scripts/json_contract_diff.py BASE_TREE BRANCH_TREE   # e.g. ../main .

Exit status 0 when everything matches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import duckdb

SAMPLE = Path(__file__).resolve().parent.parent / "datasets" / "sample"
VOLATILE = re.compile(
    r"(run_id|seconds|_at$|^at$|^ts$|created|finished|started|last_active|docs_per_second|out$|out_dir"
    r"|^source$|path|manifest_sha256|README)"
)
RUN_ID = re.compile(r"(validate|dedup|pii|labels|augment)-[0-9a-f]{12}")


def mask(x: Any) -> Any:
    if isinstance(x, dict):
        return {
            k: "<masked>" if VOLATILE.search(k) and not isinstance(v, dict | list) else mask(v) for k, v in x.items()
        }
    if isinstance(x, list):
        return [mask(v) for v in x]
    if isinstance(x, str) and RUN_ID.fullmatch(x):
        return "<run>"
    return x


def sift(tree: str, store: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIFT_ACTOR": "ana", "SIFT_RUNS": str(store.parent / "runs")}
    cmd = [sys.executable, "-m", "workbench", "--store", str(store), *argv]
    return subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env, check=False)


def sequence(ids: list[str]) -> list[list[str]]:
    flags = ["--include", "not-rejected", "--allow-unchecked", "--allow-leakage"]
    return [
        ["stats"], ["list", "--limit", "5"], ["show", ids[0]], ["quarantine"],
        ["validate", "--max-seq-len", "256"], ["show", ids[0]],
        ["dedup"], ["clusters", "--limit", "3"], ["borderline"],
        ["accept", ids[0]], ["reject", ids[1], "--reason", "bad"], ["comment", ids[0], "hi"],
        ["tag", ids[0], "--tag", "x"], ["review-config"], ["progress"], ["lineage", ids[0]],
        ["pii-scan", "--id", ids[0], "--id", ids[1], "--id", ids[2]], ["pii-findings", "--limit", "5"],
        ["redact", "--id", ids[0], "--dry-run"], ["pii-allow"], ["label-audit"],
        ["freeze", "v1", *flags, "--dry-run"], ["freeze", "v1", *flags], ["freeze", "v2", *flags, "--seed", "3"],
        ["versions"], ["verify", "v1"], ["diff", "v1", "v2"],
        ["export", "v1", "--format", "openai", "--out", "{dir}/exp"], ["runs"],
    ]  # fmt: skip


def stored(store: Path) -> tuple[list[Any], list[Any]]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        flags = con.execute(
            "SELECT conversation_id, revision, stage, reason, severity, message, details FROM flags ORDER BY ALL"
        ).fetchall()
        runs = [
            (stage, mask(json.loads(config)), mask(json.loads(stats) if stats else None))
            for stage, config, stats in con.execute(
                "SELECT stage, config, stats FROM stage_runs ORDER BY started_at"
            ).fetchall()
        ]
    finally:
        con.close()
    return flags, runs


def main(base_tree: str, branch_tree: str) -> int:
    trees = {"base": str(Path(base_tree).resolve()), "branch": str(Path(branch_tree).resolve())}
    out = Path(tempfile.mkdtemp(prefix="sift-json-diff-"))
    base = out / "start.duckdb"
    files = [str(p) for p in sorted(SAMPLE.iterdir()) if p.suffix in (".json", ".jsonl") and p.stem != "ground_truth"]
    made = sift(trees["base"], base, "import", *files, "--json")
    if made.returncode:
        raise SystemExit(made.stderr)
    listed = json.loads(sift(trees["base"], base, "list", "--limit", "3", "--json").stdout)["conversations"]
    steps = sequence([c["id"] for c in listed])
    results: dict[str, list[dict[str, Any]]] = {}
    for name, tree in trees.items():
        folder = out / name
        folder.mkdir()
        store = folder / "s.duckdb"
        shutil.copy(base, store)
        results[name] = []
        for argv in steps:
            r = sift(tree, store, *[a.replace("{dir}", str(folder)) for a in argv], "--json")
            try:
                body = mask(json.loads(r.stdout)) if r.stdout.strip() else None
            except json.JSONDecodeError:
                body = r.stdout
            results[name].append({"command": argv[0], "rc": r.returncode, "out": body, "err": r.stderr.strip()[-300:]})
    same = 0
    for a, b in zip(results["base"], results["branch"], strict=True):
        if json.dumps(a) == json.dumps(b):
            same += 1
        else:
            print("DIFF", a["command"], "\n  base  ", json.dumps(a)[:600], "\n  branch", json.dumps(b)[:600])
    print(f"{same} of {len(steps)} commands print the same JSON (key order included)")
    (fa, ra), (fb, rb) = stored(out / "base" / "s.duckdb"), stored(out / "branch" / "s.duckdb")
    runs_same = json.dumps(ra) == json.dumps(rb)
    print(
        f"flags: {len(fa)} / {len(fb)}, identical: {fa == fb}; stage runs {len(ra)} / {len(rb)}, same config and stats: {runs_same}"
    )
    ma, mb = (mask(json.loads((out / n / "exp" / "manifest.json").read_text())) for n in ("base", "branch"))
    print(f"exported manifest identical once run ids and times are masked: {json.dumps(ma) == json.dumps(mb)}")
    shutil.rmtree(out, ignore_errors=True)
    return 0 if same == len(steps) and fa == fb and runs_same and ma == mb else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
