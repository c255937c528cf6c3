"""Sift app: routes only. Pages live in workbench/app_pages/ and call the service layer."""

from __future__ import annotations

import streamlit as st

from workbench.app_pages.common import sidebar, store_path
from workbench.exposure import exposure_problem

PAGES = [
    st.Page("workbench/app_pages/import_page.py", title="Import", icon="📥", url_path="import"),
    st.Page("workbench/app_pages/browse.py", title="Browse", icon="🔎", url_path="browse", default=True),
    st.Page("workbench/app_pages/review.py", title="Review", icon="✅", url_path="review"),
    st.Page("workbench/app_pages/progress.py", title="Progress", icon="📈", url_path="progress"),
    st.Page("workbench/app_pages/lineage.py", title="Lineage", icon="🧬", url_path="lineage"),
    st.Page("workbench/app_pages/augment.py", title="Augment", icon="🪄", url_path="augment"),
    st.Page("workbench/app_pages/validate.py", title="Validate", icon="🩺", url_path="validate"),
    st.Page("workbench/app_pages/dedup.py", title="Dedup", icon="👯", url_path="dedup"),
    st.Page("workbench/app_pages/pii.py", title="PII", icon="🕵️", url_path="pii"),
    st.Page("workbench/app_pages/labels.py", title="Labels", icon="🏷️", url_path="labels"),
    st.Page("workbench/app_pages/versions.py", title="Versions", icon="🧊", url_path="versions"),
    st.Page("workbench/app_pages/train.py", title="Train", icon="🏋️", url_path="train"),
    st.Page("workbench/app_pages/compare.py", title="Compare", icon="📊", url_path="compare"),
]

st.set_page_config(page_title="Sift", page_icon="🧪", layout="wide")
# Started by hand on an open address with nobody to sign in: serve nothing (workbench/exposure.py).
problem = exposure_problem(str(st.get_option("server.address") or ""), store_path())
if problem:
    st.error(problem)
    st.stop()
sidebar()
st.navigation(PAGES).run()
