"""Import: upload files or pick a path; see the report and the quarantine with reasons."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from workbench import uploads
from workbench.app_pages.common import get_wb, may_configure, md_escape, require_actor, run

wb = get_wb()
st.title("Import")
st.caption("ShareGPT, OpenAI messages or Alpaca — .json, .jsonl or .parquet. Bad rows are quarantined, never dropped.")

fmt = st.selectbox("Format", ["auto", "sharegpt", "openai", "alpaca"], help="auto detects the dialect per file")
licence = st.text_input("Licence of the data (optional)", help="Recorded with the source; shown in dataset cards")
# Importing a file already on the server is off unless an administrator names folders for it.
roots = uploads.import_roots()
by_path = bool(roots) and may_configure()
tabs = st.tabs(["Upload", "Path on the server"] if by_path else ["Upload"])
paths: list[Path] = []
with tabs[0]:
    files = st.file_uploader("Files", type=["json", "jsonl", "parquet"], accept_multiple_files=True)
    if files and st.button("Import uploaded files", type="primary"):
        actor = require_actor()
        # Safe names in a private folder that is removed after the import (workbench/uploads.py).
        try:
            with uploads.saved([uploads.Upload(f.name, f.size, f.getvalue) for f in files]) as paths:
                report = run(wb.import_files, paths, format=fmt, actor=actor, licence=licence or None)
            st.session_state["import_report"] = report
        except uploads.UploadRefused as e:
            st.error(md_escape(str(e)))  # file names are data: shown as text
if by_path:
    with tabs[1]:
        st.caption(md_escape(f"Files inside: {', '.join(str(r) for r in roots)} (SIFT_IMPORT_ROOTS)"))
        path_text = st.text_input("File paths (one per line)")
        if st.button("Import from paths") and path_text.strip():
            actor = require_actor()
            if not may_configure():  # re-checked on the click: admins only
                st.error("Only an administrator may import files from the server.")
                st.stop()
            try:
                paths = uploads.server_paths(path_text.splitlines(), uploads.import_roots())
            except uploads.UploadRefused as e:
                st.error(md_escape(str(e)))
            else:
                st.session_state["import_report"] = run(
                    wb.import_files, paths, format=fmt, actor=actor, licence=licence or None
                )

report = st.session_state.get("import_report")
if report:
    t = report["totals"]
    st.success(
        f"{t['rows']} rows: {t['imported']} imported, {t['already_present']} already present, "
        f"{t['quarantined']} quarantined"
    )
    st.dataframe(report["files"], hide_index=True, use_container_width=True)

st.subheader("Quarantine")
page_size = 50
q = wb.quarantine(limit=page_size, offset=st.session_state.get("q_offset", 0))
st.caption(f"{q['total']} quarantined rows, each with its file, line, field and reason")
if q["rows"]:
    st.dataframe(
        [{k: r[k] for k in ("file", "line", "field", "message")} for r in q["rows"]],
        hide_index=True,
        use_container_width=True,
    )
    pick = st.selectbox(
        "Raw text of row",
        range(len(q["rows"])),
        format_func=lambda i: f"{Path(q['rows'][i]['file']).name}:{q['rows'][i]['line']}",
    )
    st.code(q["rows"][pick]["raw"][:5000], language="json")
st.subheader("Sources")
src = wb.sources()
if src:
    st.dataframe(
        [
            {
                k: s[k]
                for k in (
                    "id",
                    "name",
                    "format",
                    "rows",
                    "imported",
                    "already_present",
                    "quarantined",
                    "licence",
                    "actor",
                    "ts",
                )
            }
            for s in src
        ],
        hide_index=True,
        use_container_width=True,
    )
