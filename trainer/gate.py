"""The regression gate: may this run ship?

Per eval case the tuned answer's key score (JSON field accuracy where the reference holds a JSON
object, else ROUGE-L: the score `sift compare --regressions` uses) is set against a reference's
score on the same case: the base model's answer, or the answer of the run in production. A case
regresses when its score drops. With more than `threshold` (default 2%) of the cases regressed the
verdict is `hold`, else `ship`; a run with no scored case is held (nothing shows it is no worse).

Pure functions: the trainer writes the gate against the base model into eval.json, and the
workbench recomputes it against a production run from the stored samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DEFAULT_THRESHOLD = 0.02
EPS = 1e-9


def key_score(scores: dict[str, Any] | None) -> float:
    """JSON field accuracy where the reference is JSON, else ROUGE-L (0 for a missing answer)."""
    if not scores:
        return 0.0
    if "json_field_accuracy" in scores:
        return float(scores["json_field_accuracy"])
    return float(scores.get("rouge_l", 0.0))


def key_metric(scores: dict[str, Any] | None) -> str:
    return "json_field_accuracy" if scores and "json_field_accuracy" in scores else "rouge_l"


def gate(
    cases: Iterable[tuple[Any, dict[str, Any] | None, dict[str, Any] | None]],
    *,
    against: str = "base",
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """`cases`: (case id, tuned scores, reference scores); cases without reference scores are skipped.

    Returns {"verdict", "regressed", "cases", "threshold", "against", "regressed_fraction",
    "regressed_cases", "improved", "reason"}."""
    n = 0
    regressed: list[Any] = []
    improved = 0
    for case, tuned, ref in cases:
        if ref is None or tuned is None:
            continue
        n += 1
        t, r = key_score(tuned), key_score(ref)
        if t < r - EPS:
            regressed.append(case)
        elif t > r + EPS:
            improved += 1
    frac = len(regressed) / n if n else None
    if not n:
        verdict, reason = "hold", "no eval case was scored against the reference"
    elif frac is not None and frac > threshold:
        verdict, reason = "hold", f"{len(regressed)} of {n} cases score lower than {against} (over {threshold:.0%})"
    else:
        verdict, reason = "ship", f"{len(regressed)} of {n} cases score lower than {against} (at most {threshold:.0%})"
    return {
        "verdict": verdict,
        "regressed": len(regressed),
        "cases": n,
        "threshold": threshold,
        "against": against,
        "regressed_fraction": round(frac, 4) if frac is not None else None,
        "regressed_cases": regressed,
        "improved": improved,
        "reason": reason,
    }


def against_base(rows: list[dict[str, Any]], *, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The gate over samples.jsonl rows (index, tuned_scores, base_scores)."""
    return gate(
        ((r["index"], r.get("tuned_scores"), r.get("base_scores")) for r in rows), against="base", threshold=threshold
    )


def case_key(sample: dict[str, Any]) -> str:
    """What makes two runs' samples the same case: the prompt and the reference (not the row index,
    which differs between versions)."""
    import json

    return json.dumps([sample.get("prompt"), sample.get("reference")], sort_keys=True, ensure_ascii=False)


def against_run(
    samples: list[dict[str, Any]],
    reference_samples: list[dict[str, Any]],
    *,
    reference_run: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """The gate of one run's samples against another run's tuned answers on the cases both answered."""
    ref = {case_key(s): s.get("tuned_scores") for s in reference_samples}
    out = gate(
        ((s["index"], s.get("tuned_scores"), ref.get(case_key(s))) for s in samples),
        against=f"run:{reference_run}",
        threshold=threshold,
    )
    if not out["cases"]:
        out["reason"] = f"run {reference_run} answered none of this run's eval cases (another eval split?)"
    return out
