"""Lineage: where one conversation came from and what came of it — source rows, revisions (each
as a diff against the one before), redactions, paraphrase parent and children, and the frozen
versions that pin it."""

from __future__ import annotations

import json

import streamlit as st

from workbench.app_pages.common import get_wb, md_escape, render_diff, render_message, run

wb = get_wb()
st.title("Lineage")
if link := st.query_params.get("id"):
    st.session_state["lineage_id"] = link
    del st.query_params["id"]
cid = st.text_input("Conversation id", key="lineage_id", placeholder="id or its first characters").strip()
if not cid:
    st.caption("Enter a conversation id (Browse and Review show them).")
    st.stop()
lin = run(wb.lineage, cid)
if lin is None:
    st.stop()
cid = lin.id
st.subheader(md_escape(f"Conversation {cid}"))
st.caption(
    f"{lin.status} · revision {lin.revision} · family {lin.family_id} "
    f"({lin.family_size} conversation{'s' if lin.family_size != 1 else ''}) · [review it](review?id={cid})"
)

st.markdown("#### Source rows")
if lin.sources:
    st.dataframe(
        [
            {
                "file": s.get("file") or s.get("source"),
                "line": s.get("line"),
                "format": s.get("format"),
                "kind": s.get("kind"),
                "licence": s.get("licence"),
                "imported by": s.get("imported_by") or s.get("actor"),
                "recorded at": s["recorded_at"][:19].replace("T", " "),
                "mapping": "; ".join(s.get("mapping") or []),
                "path": s.get("path"),
            }
            for s in lin.sources
        ],
        hide_index=True,
        width="stretch",
    )
else:
    st.caption("No source row: this conversation was made inside Sift.")

st.markdown("#### Revisions")
st.dataframe(
    [
        {
            "revision": r["revision"],
            "kind": r["kind"],
            "by": r["actor"],
            "at": r["at"][:19].replace("T", " "),
            "turns": r["turns"],
            "note": r["note"],
            "content sha256": r["content_sha256"][:16],
        }
        for r in lin.revisions
    ],
    hide_index=True,
    width="stretch",
)
revs = [r["revision"] for r in lin.revisions]
pick = st.selectbox(
    "Show revision",
    revs[::-1],
    format_func=lambda n: f"revision {n}" + (" (original)" if n == 1 else " (current)" if n == revs[-1] else ""),
)
if pick > 1:
    st.caption(f"Changes from revision {pick - 1} to {pick}")
    changes = run(wb.revision_diff, cid, pick)
    if changes is not None:
        render_diff(changes)
with st.expander(f"Turns of revision {pick}"):
    d = run(wb.show, cid, pick)
    if d is not None:
        for m in d.messages:
            render_message(m)

st.markdown("#### Redactions")
if lin.redactions:
    st.dataframe(
        [
            {
                "revision": r["revision"],
                "by": r["actor"],
                "at": r["at"][:19].replace("T", " "),
                "note": r["note"],
                "how": json.dumps(r["provenance"], ensure_ascii=False) if r["provenance"] else None,
            }
            for r in lin.redactions
        ],
        hide_index=True,
        width="stretch",
    )
    st.caption("The text before a redaction stays readable above, revision by revision.")
else:
    st.caption("Never redacted.")

st.markdown("#### Paraphrases")
if lin.parents:
    st.caption("Made from:")
    st.dataframe(lin.parents, hide_index=True, width="stretch")
if lin.children:
    shown = len(lin.children)
    st.caption(
        f"{lin.children_total} conversation{'s' if lin.children_total != 1 else ''} made from it"
        + (f" (first {shown} shown)" if shown < lin.children_total else "")
    )
    st.dataframe(lin.children, hide_index=True, width="stretch")
if not lin.parents and not lin.children:
    st.caption("No paraphrase parent or children.")

st.markdown("#### Versions")
if lin.versions is None:
    st.caption("No version has been frozen in this store yet.")
elif lin.versions:
    st.dataframe(lin.versions, hide_index=True, width="stretch")
else:
    st.caption("Not in any frozen version.")
