"""Sift app: routes only. Pages live in workbench/app_pages/ and call the service layer."""

from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from workbench.app_pages.common import sidebar, store_path
from workbench.exposure import exposure_problem


def page(file: str, title: str, icon: str, url: str, **kw: bool) -> StreamlitPage:
    return st.Page(f"workbench/app_pages/{file}.py", title=title, icon=icon, url_path=url, **kw)


# Icons from the Material Symbols font that Streamlit serves itself (no emoji font needed, so they
# draw the same on every machine, offline included). Grouped as an SME works: bring data in, curate it, review it, then train on a frozen version.
# Home is the default page (served at "/"); every other page opens directly at its own path.
PAGES = {
    "": [page("home", "Home", ":material/home:", "home", default=True)],
    "Data": [
        page("import_page", "Import", ":material/upload_file:", "import"),
        page("browse", "Browse", ":material/search:", "browse"),
        page("lineage", "Lineage", ":material/account_tree:", "lineage"),
    ],
    "Curate": [
        page("validate", "Validate", ":material/rule:", "validate"),
        page("dedup", "Dedup", ":material/content_copy:", "dedup"),
        page("pii", "PII", ":material/shield_person:", "pii"),
        page("labels", "Labels", ":material/label:", "labels"),
        page("augment", "Augment", ":material/auto_fix_high:", "augment"),
    ],
    "Review": [
        page("review", "Review", ":material/task_alt:", "review"),
        page("progress", "Progress", ":material/monitoring:", "progress"),
    ],
    "Train": [
        page("versions", "Versions", ":material/inventory_2:", "versions"),
        page("train", "Train", ":material/model_training:", "train"),
        page("compare", "Compare", ":material/compare_arrows:", "compare"),
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
