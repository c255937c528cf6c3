"""Who is using the app and over which store: the store handle, sign-in (OIDC, a reviewer list or a typed
name) and the one rule that nothing happens before sign-in."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

import workbench
from workbench.app_pages.common.safe_text import md_escape
from workbench.services import Workbench


def store_path() -> str:
    return os.environ.get("SIFT_STORE", "sift.duckdb")


@st.cache_resource
def _wb(path: str) -> Workbench:
    wb = workbench.open(path)
    # A page is a burst of short reads: keep the file open between them (see Database).
    wb.store.db.keep_open_s = float(os.environ.get("SIFT_APP_KEEP_OPEN_S", "2"))
    return wb


def get_wb() -> Workbench:
    """The workbench over $SIFT_STORE; it holds no connection, so the CLI can use the file too.

    Every page starts with this call, so it carries the one sign-in rule: with a reviewer list or
    OIDC, a visitor who has not signed in gets no further (no store read, no server file, no
    outbound call). With names only, the store may be read before a name is typed; anything that
    writes, reads another server file or calls out goes through `require_actor()` first."""
    if auth_mode() != "name" and current_actor() is None:
        st.info("Sign in in the sidebar to use Sift.")
        st.stop()
    return _wb(store_path())


def secrets_mapping() -> Mapping[str, Any] | None:
    """`.streamlit/secrets.toml` as a mapping, or None when there is none."""
    try:
        return st.secrets.to_dict() if len(st.secrets) else None
    except Exception:  # no secrets file at all
        return None


def current_actor() -> str | None:
    """Who is acting: the OIDC user, a signed-in listed reviewer, or the typed name (in that order
    of what the store is configured for); None until they identify."""
    mode = auth_mode()
    if mode == "oidc":
        return oidc_user()
    name = st.session_state.get("reviewer")
    if mode == "password" and (not name or st.session_state.get("reviewer_verified") != name):
        return None
    return name.strip() if isinstance(name, str) and name.strip() else None


def require_actor() -> str:
    """The reviewer's name; stops the page with a notice when nobody has identified."""
    name = current_actor()
    if name is None:
        st.warning(
            "Sign in in the sidebar before changing anything."
            if auth_mode() != "name"
            else "Enter your reviewer name in the sidebar before changing anything."
        )
        st.stop()
    return name


def sidebar() -> None:
    """Who is reviewing: OIDC login (when `[auth]` is in the secrets), a signed-in reviewer (when a
    reviewer list exists), or a typed name."""
    mode = auth_mode()
    if mode == "oidc":
        _oidc_sidebar()
    elif mode == "password":
        _password_sidebar()
    else:
        st.sidebar.text_input(
            "Reviewer name", key="reviewer", help="Recorded on every change you make (accept, edit, comment…)."
        )
    if current_actor() is not None:  # a server path: not for visitors
        st.sidebar.caption(f"Store: {md_escape(store_path())}")


def oidc_providers() -> list[str] | None:
    """None when Streamlit's OIDC login is not configured; else the named providers ([] = the
    single provider configured directly under [auth])."""
    try:
        auth = st.secrets.get("auth") if "auth" in st.secrets else None
    except Exception:  # no secrets file at all
        return None
    if not isinstance(auth, Mapping):
        return None
    return [k for k, v in auth.items() if isinstance(v, Mapping)]


def reviewer_list_path() -> Path:
    from workbench.reviewers import reviewers_path

    return reviewers_path(store_path())


def auth_mode() -> str:
    """'oidc', 'password' (a reviewer list exists) or 'name' (anyone types a name)."""
    if oidc_providers() is not None:
        return "oidc"
    return "password" if reviewer_list_path().exists() else "name"


def oidc_user() -> str | None:
    user = st.user
    if not user.get("is_logged_in"):
        return None
    name = user.get("email") or user.get("name") or user.get("sub")
    return str(name) if name else None


def _oidc_sidebar() -> None:
    name = oidc_user()
    if name:
        st.session_state["reviewer"] = name
        st.sidebar.success(md_escape(f"Signed in as {name}"), icon=":material/person:")
        if st.sidebar.button("Log out"):
            st.logout()
        return
    providers: list[str | None] = [*(oidc_providers() or [])] or [None]
    for p in providers:
        if st.sidebar.button(f"Log in with {p}" if p else "Log in", type="primary", key=f"login_{p}"):
            st.login(p) if p else st.login()


def _password_sidebar() -> None:
    from workbench.reviewers import THROTTLE, ReviewerConfigError, authenticate

    name = st.session_state.get("reviewer")
    if name and st.session_state.get("reviewer_verified") == name:
        st.sidebar.success(md_escape(f"Signed in as {name}"), icon=":material/person:")
        if st.sidebar.button("Sign out"):
            for k in ("reviewer", "reviewer_verified", "reviewer_admin"):
                st.session_state.pop(k, None)
            st.rerun()
        return
    with st.sidebar.form("sign_in"):
        who = st.text_input("Reviewer name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        # Failures are counted per name and per client address for the whole server (not this
        # session): after a few, both are locked for longer and longer, and nothing is checked.
        keys = THROTTLE.keys(who, client_address())
        wait = THROTTLE.wait_s(keys)
        if wait > 0:
            st.sidebar.error(f"Too many failed sign-ins: try again in {math.ceil(wait)} s.")
            return
        try:
            reviewer = authenticate(reviewer_list_path(), who.strip(), password)
        except ReviewerConfigError as e:
            st.sidebar.error(md_escape(str(e)))
            return
        if reviewer is None:
            THROTTLE.failed(keys)
            st.session_state["sign_in_failures"] = st.session_state.get("sign_in_failures", 0) + 1
            st.sidebar.error("Unknown reviewer or wrong password.")
            return
        THROTTLE.succeeded(keys[0])
        st.session_state.update(
            reviewer=reviewer.name, reviewer_verified=reviewer.name, reviewer_admin=reviewer.admin, sign_in_failures=0
        )
        st.rerun()


def client_address() -> str | None:
    """The browser's address as the server sees it (None in tests without a server)."""
    try:
        ip = st.context.ip_address
    except Exception:  # an older Streamlit or no request context
        return None
    return ip if isinstance(ip, str) and ip else None


def may_configure() -> bool:
    """Whether the current reviewer may change the store's review guide and lists: anyone
    identified, except that a reviewer list reserves it to its admins."""
    if current_actor() is None:
        return False
    return auth_mode() != "password" or bool(st.session_state.get("reviewer_admin"))
