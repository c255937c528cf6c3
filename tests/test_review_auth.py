"""Who may change anything: a typed name, a password-protected reviewer list, or OIDC login —
through the real router (sidebar) and the Review page; and the `sift reviewer` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from tests.conftest import ROOT, write
from workbench.reviewers import add_reviewer, authenticate, load_reviewers


@pytest.fixture
def store(tmp_path: Path, monkeypatch):
    path = tmp_path / "a.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(path))
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "reviewers.toml"))
    wb = workbench.open(path)
    wb.import_files([write(tmp_path / "one.json", json.dumps([{"instruction": "q", "output": "a"}]))], actor="loader")
    return wb


def router() -> AppTest:
    return AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60)


def test_password_list_signs_reviewers_in(store, tmp_path: Path) -> None:
    add_reviewer(tmp_path / "reviewers.toml", "ana", "correct horse", admin=True)
    at = router().run()
    assert not at.exception
    labels = [t.label for t in at.sidebar.text_input]
    assert labels == ["Reviewer name", "Password"]  # no free-name box when a list exists
    at.sidebar.text_input[0].input("ana")
    at.sidebar.text_input[1].input("wrong")
    at.sidebar.button[0].click().run()
    assert [e.value for e in at.sidebar.error] == ["Unknown reviewer or wrong password."]
    assert at.session_state["sign_in_failures"] == 1 and "reviewer" not in at.session_state
    at.sidebar.text_input[1].input("correct horse")
    at.sidebar.button[0].click().run()
    assert [s.value for s in at.sidebar.success] == ["Signed in as ana"]
    assert at.session_state["reviewer"] == "ana" and at.session_state["reviewer_admin"] is True
    next(b for b in at.sidebar.button if b.label == "Sign out").click().run()
    assert "reviewer" not in at.session_state


def test_unverified_name_cannot_act_when_a_list_exists(store, tmp_path: Path) -> None:
    add_reviewer(tmp_path / "reviewers.toml", "ana", "pw")
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "review.py"), default_timeout=60)
    at.session_state["reviewer"] = "mallory"  # typed somewhere, never signed in
    at.run()
    # The one sign-in rule: an unverified visitor sees no data and no button at all.
    assert [i.value for i in at.info] == ["Sign in in the sidebar to use Sift."]
    assert not at.button and not at.toggle and not at.markdown
    at.session_state["reviewer_verified"] = "mallory"  # what signing in sets
    at.run()
    assert not next(b for b in at.button if "Accept" in b.label).disabled
    assert not [t for t in at.toggle if t.label == "Edit the guide and lists"]  # only admins edit the guide


def test_oidc_login_when_configured(store) -> None:
    at = router()
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "sift",
        "client_secret": "s",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at.run()
    assert not at.exception
    assert [b.label for b in at.sidebar.button] == ["Log in"]
    assert not at.sidebar.text_input  # identity comes from the provider only


def test_reviewer_cli(store, tmp_path: Path) -> None:
    f = tmp_path / "team.toml"
    cmd = [sys.executable, "-m", "workbench", "reviewer", "add", "bo", "--admin", "--password-stdin", "--file", str(f)]
    p = subprocess.run([*cmd, "--json"], input="pw-bo\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"name": "bo", "admin": True, "file": str(f)}
    assert load_reviewers(f)["bo"].admin and "pw-bo" not in f.read_text()
    assert authenticate(f, "bo", "pw-bo") is not None
