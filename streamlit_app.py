"""Sift app: routes only. Pages live in workbench/app_pages/ and call the service layer."""

from __future__ import annotations

import streamlit as st

from workbench.app_pages.common import sidebar

PAGES = [
    st.Page("workbench/app_pages/import_page.py", title="Import", icon="📥", url_path="import"),
    st.Page("workbench/app_pages/browse.py", title="Browse", icon="🔎", url_path="browse", default=True),
]

st.set_page_config(page_title="Sift", page_icon="🧪", layout="wide")
sidebar()
st.navigation(PAGES).run()
