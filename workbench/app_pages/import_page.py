"""Import: upload files or pick a path; see the report and the quarantine with reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from curation.errors import SiftError
from workbench import uploads
from workbench.app_pages.common import get_wb, may_configure, md_escape, require_actor, run
from workbench.services.core import ImportPreview, ImportReport, UnreadableFile

wb = get_wb()


def column_map_form() -> Any:
    """A column/role mapping, as LLaMA-Factory's dataset_info.json describes one (None: the
    dialect's own names). Either a pasted dataset_info entry or the fields one by one."""
    from curation.column_map import ColumnMap, MappingError

    with st.expander("Column mapping (for files whose columns or roles are named differently)"):
        how = st.radio(
            "Mapping", ["none", "fields", "dataset_info.json entry"], horizontal=True, key="imp_map_how",
            help="LLaMA-Factory's dataset_info.json format: formatting, columns, tags (and ranking).",
        )  # fmt: skip
        try:
            if how == "dataset_info.json entry":
                text = st.text_area(
                    "One dataset's entry (JSON)", key="imp_map_json", height=160,
                    placeholder='{"formatting": "sharegpt", "columns": {"messages": "conversations"}, '
                    '"tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}',
                )  # fmt: skip
                if not text.strip():
                    return None
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError as e:
                    st.error(f"Not valid JSON (line {e.lineno}: {e.msg}).")
                    return None
                return ColumnMap.from_entry(entry)
            if how == "fields":
                formatting = st.radio("Formatting", ["alpaca", "sharegpt"], horizontal=True, key="imp_map_fmt")
                names = (
                    ["prompt", "query", "response", "system", "history", "tools"]
                    if formatting == "alpaca"
                    else ["messages", "system", "tools"]
                )
                cols = st.columns(len(names))
                columns = {
                    n: c.text_input(f"{n} column", key=f"imp_map_col_{n}").strip()
                    for n, c in zip(names, cols, strict=True)
                }
                tags: dict[str, str] = {}
                if formatting == "sharegpt":
                    tag_names = [
                        "role_tag",
                        "content_tag",
                        "user_tag",
                        "assistant_tag",
                        "system_tag",
                        "observation_tag",
                        "function_tag",
                    ]
                    tcols = st.columns(len(tag_names))
                    tags = {
                        n: c.text_input(n, key=f"imp_map_tag_{n}").strip()
                        for n, c in zip(tag_names, tcols, strict=True)
                    }
                st.caption(
                    "Empty fields keep the dialect's own names (alpaca: instruction, input, output; sharegpt: conversations of from/value, human/gpt)."
                )
                return ColumnMap(
                    formatting, {k: v for k, v in columns.items() if v}, {k: v for k, v in tags.items() if v}
                )
        except MappingError as e:
            st.error(md_escape(str(e)))
    return None


def preview_uploads(files: list[Any], fmt: str, column_map: Any) -> list[tuple[str, ImportPreview | str]]:
    """The first rows of each uploaded file as Sift would map them (or why not); nothing is written."""
    out: list[tuple[str, ImportPreview | str]] = []
    try:
        with uploads.saved([uploads.Upload(f.name, f.size, f.getvalue) for f in files]) as paths:
            for f, path in zip(files, paths, strict=True):
                try:
                    out.append((f.name, wb.import_preview(path, format=fmt, column_map=column_map)))
                except SiftError as e:
                    out.append((f.name, str(e).replace(str(path), f.name)))
    except uploads.UploadRefused as e:
        st.error(md_escape(str(e)))
    return out


def show_preview(preview: list[tuple[str, ImportPreview | str]] | None) -> None:
    for name, p in preview or []:
        st.markdown(f"**Preview of {md_escape(name, at_line_start=False)}**")
        if isinstance(p, str):
            st.error(md_escape(p))
            continue
        st.caption(f"read as {p.format}; the first {len(p.conversations) + len(p.quarantined)} rows")
        st.dataframe(
            [
                {
                    "line": c["line"],
                    **{f"turn {i + 1}": f"{m['role']}: {m['text'][:200]}" for i, m in enumerate(c["messages"][:6])},
                }
                for c in p.conversations
            ],
            hide_index=True,
            width="stretch",
        )
        if p.quarantined:
            st.dataframe(p.quarantined, hide_index=True, width="stretch")


st.title("Import")
st.caption("ShareGPT, OpenAI messages or Alpaca — .json, .jsonl or .parquet. Bad rows are quarantined, never dropped.")

fmt = st.selectbox("Format", ["auto", "sharegpt", "openai", "alpaca"], help="auto detects the dialect per file")
licence = st.text_input("Licence of the data (optional)", help="Recorded with the source; shown in dataset cards")
column_map = column_map_form()
# Importing a file already on the server is off unless an administrator names folders for it.
roots = uploads.import_roots()
by_path = bool(roots) and may_configure()
tabs = st.tabs(["Upload", "Path on the server"] if by_path else ["Upload"])
paths: list[Path] = []
with tabs[0]:
    files = st.file_uploader("Files", type=["json", "jsonl", "parquet"], accept_multiple_files=True)
    u1, u2, _ = st.columns([1.2, 1.6, 3])
    if files and u1.button("Preview the first rows"):
        require_actor()
        st.session_state["import_preview"] = preview_uploads(files, fmt, column_map)
    if files and u2.button("Import uploaded files", type="primary"):
        actor = require_actor()
        # Safe names in a private folder that is removed after the import (workbench/uploads.py);
        # the store records each file under the name the user gave it (made safe: no folders, no
        # clash between two uploads), never the temporary path, and each file on its own.
        try:
            with uploads.saved([uploads.Upload(f.name, f.size, f.getvalue) for f in files]) as paths:
                report = run(
                    wb.import_files, paths, format=fmt, actor=actor, licence=licence or None,
                    names=uploads.recorded_names([f.name for f in files]), column_map=column_map, each=True,
                )  # fmt: skip
            st.session_state["import_report"] = report
            st.session_state.pop("import_preview", None)
        except uploads.UploadRefused as e:
            st.error(md_escape(str(e)))  # file names are data: shown as text
    show_preview(st.session_state.get("import_preview"))
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
                    wb.import_files, paths, format=fmt, actor=actor, licence=licence or None, column_map=column_map
                )

shown: ImportReport | None = st.session_state.get("import_report")
if shown:
    t = shown.totals
    st.success(
        f"{t.rows} rows: {t.imported} imported, {t.already_present} already present, {t.quarantined} quarantined"
    )
    for f in shown.files:
        if isinstance(f, UnreadableFile):
            st.error(md_escape(f"{f.path}: not imported: {f.error}"))
    st.dataframe(
        [
            {"file": f.path, "format": "-", "rows": 0, "imported": 0, "already present": 0, "quarantined": 0,
             "error": f.error}
            if isinstance(f, UnreadableFile)
            else {"file": f.path, "format": f.format, "rows": f.rows, "imported": f.imported,
                  "already present": f.already_present, "quarantined": f.quarantined, "error": ""}
            for f in shown.files
        ],
        hide_index=True,
        width="stretch",
    )  # fmt: skip

st.subheader("Quarantine")
page_size = 50
q = wb.quarantine(limit=page_size, offset=st.session_state.get("q_offset", 0))
st.caption(f"{q.total} quarantined rows, each with its file, line, field and reason")
if q.rows:
    st.dataframe(
        [{k: r[k] for k in ("file", "line", "field", "message")} for r in q.rows],
        hide_index=True,
        width="stretch",
    )
    pick = st.selectbox(
        "Raw text of row",
        range(len(q.rows)),
        format_func=lambda i: f"{Path(q.rows[i]['file']).name}:{q.rows[i]['line']}",
    )
    st.code(q.rows[pick]["raw"][:5000], language="json")
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
        width="stretch",
    )
