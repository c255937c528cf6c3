"""Label audit quality and time on the demo's noisy pool, scored against the generator's ground truth.

Baseline: the planted problems themselves (`generate_noisy`'s ground truth): every flagged row is
put in the problem kind planted on it, so precision and recall are exact, not estimated.

    .venv/bin/python bench/run.py bench_labels
    SIFT_BENCH_LABELS_N=20000 .venv/bin/python bench/run.py bench_labels
    SIFT_BENCH_LABELS_REALISTIC=1 .venv/bin/python bench/run.py bench_labels   # the realistic pool (issue 21)
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "datasets"))  # the sample generator, `tickets`


def main() -> None:
    from tickets import generate_noisy

    from curation.formats import map_openai
    from curation.labels import audit_labels

    n = int(os.environ.get("SIFT_BENCH_LABELS_N", "5000"))
    realistic = os.environ.get("SIFT_BENCH_LABELS_REALISTIC", "") not in ("", "0")
    rows, truth = generate_noisy(n, seed=0, eval_size=400, realistic=realistic)  # the demo's --full pool
    convs = [map_openai(r)[0] for r in rows]
    ids = [c.id for c in convs]
    items = {c.id: c for c in convs}  # exact copies collapse, as at import
    t0 = time.perf_counter()
    audit = audit_labels(items)
    seconds = time.perf_counter() - t0
    kind: dict[str, str] = {}
    for p in truth["problems"]:
        k = p["kind"] + ("_conflicting" if p.get("conflicting_labels") else "")
        kind.setdefault(ids[p["row"]], k)
    wrong = {ids[p["row"]]: p for p in truth["problems"] if p["kind"] == "wrong_label"}
    flagged = audit.by_id()
    right = sum(
        1
        for s in audit.suspects
        if s.id in wrong and s.field == wrong[s.id]["field"] and s.suggested == wrong[s.id]["true_labels"][s.field]
    )
    by_kind = Counter(kind.get(cid, "clean") for cid in flagged)
    clean = sum(1 for cid in items if cid not in kind)
    print(f"{len(items)} conversations ({n} rows), {len(wrong)} planted wrong labels; audit {seconds:.2f} s\n")
    print("| flagged rows by planted kind | rows |\n|---|---|")
    for k, v in by_kind.most_common():
        print(f"| {k} | {v} |")
    print(f"| **all flagged** | {len(flagged)} |\n")
    found = sum(1 for cid in wrong if cid in flagged)
    print(
        f"recall of planted wrong labels: {found}/{len(wrong)} = {found / len(wrong):.3f}; true label suggested: {right}"
    )
    fp = by_kind.get("clean", 0)
    print(f"clean rows flagged (false positives): {fp} of {clean} ({fp / max(1, clean):.2%})")
    for k in ("label_confusion", "biased_annotator", "templated_answer"):
        planted = {ids[p["row"]] for p in truth["problems"] if p["kind"] == k}
        if planted:
            hit = sum(1 for cid in planted if cid in flagged)
            print(f"recall of planted {k}: {hit}/{len(planted)} = {hit / len(planted):.3f}")
    print("out-of-fold agreement: " + ", ".join(f"{f} {v['oof_accuracy']:.3f}" for f, v in audit.per_field.items()))


if __name__ == "__main__":
    main()
