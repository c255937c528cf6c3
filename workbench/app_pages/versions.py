"""Versions: preview a freeze (counts, exclusions, leakage), freeze, list, diff, verify, download."""

from __future__ import annotations

import streamlit as st

from curation.manifest import EXPORT_FORMATS
from curation.split import INCLUDE
from workbench.app_pages.common import get_wb, md_escape, require_actor, run
from workbench.services.versions import FreezeResult

wb = get_wb()
st.title("Versions")
st.caption(
    "A version is a frozen, content-hashed train/eval split. Whole families (near-duplicates, paraphrases and "
    "their source) stay on one side, and a freeze is refused while eval duplicates train."
)
listed = wb.versions().versions
names = [v["name"] for v in listed]

st.subheader("Freeze")
c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
name = c1.text_input("Version name", key="freeze_name", placeholder="e.g. v1")
eval_fraction = c2.number_input("Eval fraction", min_value=0.0, max_value=0.9, value=0.1, step=0.05)
seed = int(c3.number_input("Seed", min_value=0, value=42, step=1))
include = c4.selectbox("Include", INCLUDE, help="accepted only, or accepted + pending")
c5, c6, c7 = st.columns([2, 2, 1])
stratify_by = c5.text_input("Stratify by tag (optional)", help="tags 'TAG:value' give the strata")
parent = c6.selectbox("Parent version", ["(none)", *names])
keep_pii = c7.checkbox("Keep unresolved PII", value=False)
options = {
    "eval_fraction": float(eval_fraction),
    "seed": seed,
    "include": include,
    "stratify_by": stratify_by.strip() or None,
    "exclude_unresolved_pii": not keep_pii,
    "parent": None if parent == "(none)" else parent,
}
key = repr((name, options))
if st.session_state.get("freeze_key") != key:  # any change invalidates the last preview
    st.session_state["freeze_key"] = key
    st.session_state.pop("freeze_preview", None)
if st.button("Preview", disabled=not name):
    st.session_state["freeze_preview"] = run(wb.preview_freeze, name, **options)
preview: FreezeResult | None = st.session_state.get("freeze_preview")
if preview:
    families = preview.families or {}
    m1, m2, m3 = st.columns(3)
    m1.metric("Train", preview.train, help=f"{families.get('train')} families")
    m2.metric("Eval", preview.eval, help=f"{families.get('eval')} families")
    m3.metric("Left out", sum(preview.excluded.values()))
    if preview.excluded:
        st.dataframe([{"reason": r, "conversations": n} for r, n in preview.excluded.items()], hide_index=True)
    for w in preview.warnings or []:
        st.info(w)
    leaks = preview.leakage or []
    if leaks:
        st.error(
            f"Leakage check ({preview.leakage_method}): {len(leaks)} eval conversation(s) duplicate train. "
            "Run dedup or reject one of each pair; freezing is refused until none remain."
        )
        st.dataframe(leaks, hide_index=True)
    else:
        st.success(f"Leakage check ({preview.leakage_method}): no eval conversation duplicates train.")
    unchecked = preview.unchecked or {}
    allow_unchecked = False
    if unchecked:
        st.warning(
            "Changed since their last check: "
            + ", ".join(f"{n} after the last {stage} run" for stage, n in unchecked.items())
            + ". Run those stages again (their flags belong to the old revisions), or freeze anyway."
        )
        allow_unchecked = st.checkbox("Freeze anyway, with those rows unchecked")
    if st.button("Freeze", type="primary", disabled=bool(leaks) or (bool(unchecked) and not allow_unchecked)):
        actor = require_actor()
        done = run(wb.freeze, name, actor=actor, allow_unchecked=allow_unchecked, **options)
        if done:
            st.session_state.pop("freeze_preview", None)
            st.session_state["freeze_done"] = done
            st.rerun()
frozen: FreezeResult | None = st.session_state.pop("freeze_done", None)
if frozen:
    st.success(md_escape(f"Froze {frozen.version}: {frozen.train} train, {frozen.eval} eval."))
    st.text(f"manifest sha256 {frozen.manifest_sha256}")

st.subheader("Versions")
if not listed:
    st.caption("No versions yet.")
    st.stop()
st.dataframe(
    [{k: v[k] for k in ("name", "created_at", "actor", "parent", "train", "eval", "manifest_sha256")} for v in listed],
    hide_index=True,
    width="stretch",
)

st.subheader("Verify and download")
d1, d2 = st.columns([2, 1])
chosen = d1.selectbox("Version", names, index=len(names) - 1, key="export_version")
fmt = d2.selectbox("Format", EXPORT_FORMATS, key="export_format")
b1, b2, _ = st.columns([1, 1, 4])
if b1.button("Verify"):
    report = run(wb.verify_version, chosen)
    if report and report.ok:
        st.success(md_escape(f"{chosen}: every hash recomputes from the store."))
    elif report:
        st.error(md_escape(f"{chosen}: verification failed."))
        for p in report.problems:
            st.text(p)
if b2.button("Prepare zip"):
    data = run(wb.export_zip, chosen, fmt)
    if data is not None:
        st.session_state["export_zip"] = (chosen, fmt, data)
ready = st.session_state.get("export_zip")
if ready and ready[:2] == (chosen, fmt):
    st.download_button(
        md_escape(f"Download {chosen} ({fmt}) as zip"),
        ready[2],
        file_name=f"{chosen}-{fmt}.zip",
        mime="application/zip",
    )

st.subheader("Diff")
if len(names) < 2:
    st.caption("Freeze a second version to compare.")
    st.stop()
e1, e2 = st.columns(2)
a = e1.selectbox("From", names, index=len(names) - 2, key="diff_a")
b = e2.selectbox("To", names, index=len(names) - 1, key="diff_b")
diff = run(wb.diff_versions, a, b)
if diff:
    st.dataframe(
        [
            {
                "split": s,
                "added": len(d["added"]),
                "removed": len(d["removed"]),
                "changed": len(d["changed"]),
                "unchanged": d["unchanged"],
            }
            for s, d in diff.splits.items()
        ],
        hide_index=True,
    )
    if diff.moved:
        st.caption(f"{len(diff.moved)} conversation(s) moved between splits")
    for s, d in diff.splits.items():
        rows = (
            [{"change": "added", "id": c, "revision": ""} for c in d["added"]]
            + [{"change": "removed", "id": c, "revision": ""} for c in d["removed"]]
            + [{"change": "changed", "id": c["id"], "revision": f"{c['from']} → {c['to']}"} for c in d["changed"]]
        )
        if rows:
            with st.expander(f"{s}: {len(rows)} change(s)"):
                st.dataframe(rows, hide_index=True)
