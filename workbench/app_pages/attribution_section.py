"""Compare's "What each curation step bought" section (its own module: other sections live beside it).

For a version with leave-one-step-out versions (`sift ablate`): per step, the version's score minus
the score of the version without that step, paired by training seed, with the spread over seeds, and
what leaving the step out changes in the data."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench.app_pages.common import run
from workbench.services import Workbench
from workbench.services.ablate import Attribution

_METRICS = {"field accuracy": "json_field_accuracy", "all three fields right": "json_exact"}


def _pm(mean: float | None, sd: float | None, sign: bool = False) -> str:
    if mean is None:
        return "–"
    m = f"{mean:+.3f}" if sign else f"{mean:.3f}"
    return m if sd is None else f"{m} ± {sd:.3f}"


def rows_of(att: Attribution) -> list[dict[str, Any]]:
    out = []
    for r in att.steps:
        d = r.get("data") or {}
        out.append(
            {
                "left out": r["label"],
                "version": r["version"],
                "runs": r["runs"],
                "score": _pm(r["mean"], r["sd"]),
                "bought (paired by seed)": _pm(r["bought"], r["bought_sd"], sign=True),
                "seeds paired": len(r["paired_seeds"]),
                "clear (> 2 sd)": "yes" if r["clear"] else "no",
                "rows put back": r["added"],
                "redactions undone": r["reverted"],
                "train / eval": f"{d['train']} / {d['eval']}" if d else None,
                "PII findings": d.get("pii_findings"),
                "held-out near-copies in train": (d.get("held_out_near_copies") or {}).get("train"),
            }
        )
    return out


def render(wb: Workbench) -> None:
    versions = run(wb.ablated_versions)
    if not versions:
        return
    st.subheader("What each curation step bought")
    cols = st.columns(2)
    version = cols[0].selectbox("Curated version", versions, index=len(versions) - 1, key="att_version")
    label = cols[1].radio("Metric", list(_METRICS), horizontal=True, key="att_metric")
    att = run(wb.attribution, version, metric=_METRICS[label])
    if att is None:
        return
    full = att.full
    on = ", ".join(att.scored_on or ["no finished runs yet"])
    st.caption(
        f"{version}: {label} {_pm(full['mean'], full['sd'])} over {len(full['seeds'])} seed(s), scored on {on}. "
        "Each row is a version frozen from it without one step (`sift ablate`), trained with the same config "
        "and seeds: 'bought' is the mean over shared seeds of (full curation − without the step), ± the "
        "standard deviation of those paired differences; clear means the gain is over twice that spread "
        "(needs at least 2 seeds). The last row is the parent version: no curation at all."
        + (
            f" {att.other_recipe_runs} run(s) of another recipe (DoRA, full fine-tuning, other learning rate …) "
            "are left out: only runs trained like most of this version's runs are compared."
            if att.other_recipe_runs
            else ""
        )
    )
    st.dataframe(rows_of(att), hide_index=True, width="stretch")
