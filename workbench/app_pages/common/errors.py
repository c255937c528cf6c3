"""The one place the app translates domain errors (`curation.errors.SiftError`): a service call whose
error becomes `st.error` (messages quote names, paths and ids: data, so they are escaped)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from curation.errors import SiftError
from workbench.app_pages.common.safe_text import md_escape

T = TypeVar("T")


def domain_errors() -> tuple[type[BaseException], ...]:
    """The errors a page shows as a message (all derive from `curation.errors.SiftError`)."""
    return (SiftError,)


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call a service; a domain error becomes st.error and None."""
    try:
        return fn(*args, **kwargs)
    except domain_errors() as e:
        st.error(md_escape(str(e)))  # messages quote names, paths and ids: data
        return None


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Call a service for its effect; a domain error becomes st.error and False."""
    try:
        fn(*args, **kwargs)
    except domain_errors() as e:
        st.error(md_escape(str(e)))
        return False
    return True
