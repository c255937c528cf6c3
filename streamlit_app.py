"""Sift app: routes only. Pages live in workbench/app_pages/ and call the service layer."""

from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from workbench.app_pages.common import sidebar, store_path
from workbench.exposure import exposure_problem


def page(file: str, title: str, icon: str, url: str, **kw: bool) -> StreamlitPage:
    return st.Page(f"workbench/app_pages/{file}.py", title=title, icon=icon, url_path=url, **kw)


# Grouped as an SME works: bring data in, curate it, review it, then train on a frozen version.
# Home is the default page (served at "/"); every other page opens directly at its own path.
PAGES = {
    "": [page("home", "Home", "🏠", "home", default=True)],
    "Data": [
        page("import_page", "Import", "📥", "import"),
        page("browse", "Browse", "🔎", "browse"),
        page("lineage", "Lineage", "🧬", "lineage"),
    ],
    "Curate": [
        page("validate", "Validate", "🩺", "validate"),
        page("dedup", "Dedup", "👯", "dedup"),
        page("pii", "PII", "🕵️", "pii"),
        page("labels", "Labels", "🏷️", "labels"),
        page("augment", "Augment", "🪄", "augment"),
    ],
    "Review": [
        page("review", "Review", "✅", "review"),
        page("progress", "Progress", "📈", "progress"),
    ],
    "Train": [
        page("versions", "Versions", "🧊", "versions"),
        page("train", "Train", "🏋️", "train"),
        page("compare", "Compare", "📊", "compare"),
    ],
}

st.set_page_config(page_title="Sift", page_icon="🧪", layout="wide")
# Started by hand on an open address with nobody to sign in: serve nothing (workbench/exposure.py).
problem = exposure_problem(str(st.get_option("server.address") or ""), store_path())
if problem:
    st.error(problem)
    st.stop()
sidebar()
st.navigation(PAGES, expanded=True).run()
