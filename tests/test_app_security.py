"""App security (issue 16): the one sign-in rule over every page and button, the endpoints the
Augment page may call, and what a visitor can reach.

Real Streamlit (AppTest) over a real DuckDB file, and a real HTTP server on loopback that records
every request the app makes (it stands in for any outside host: it is the only one configured).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
from streamlit.testing.v1 import AppTest

import workbench
from curation.llm import LLMError
from tests.conftest import ROOT, write
from tests.reliability_figures import record
from workbench.llm_endpoints import configured_endpoints
from workbench.reviewers import add_reviewer

# The pages the router serves (app_pages/ also holds helper modules and the common/ package).
PAGES = sorted(
    ROOT / "workbench" / "app_pages" / f"{m}.py"
    for m in re.findall(r'page\("(\w+)"', (ROOT / "streamlit_app.py").read_text())
)
assert len(PAGES) >= 13, "the router's page list was not found"
SECRET = "sk-visitor-must-never-see-this"


class Capture(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        Capture.seen.append(f"{self.command} {self.path}")
        body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def capture():
    Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(tmp_path: Path, monkeypatch, capture: str):
    """A store with data, an LLM endpoint (the capture server) with a key, and a file elsewhere on
    the server that a visitor must not be able to import or read."""
    store = tmp_path / "s.duckdb"
    rows = [
        {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(3)
    ]
    wb = workbench.open(store)
    wb.import_files([write(tmp_path / "seed.jsonl", "\n".join(json.dumps(r) for r in rows))], actor="loader")
    (tmp_path / "private").mkdir()
    private = write(tmp_path / "private" / "server-only.jsonl", json.dumps(rows[0] | {"id": "p"}))
    for k, v in {
        "SIFT_STORE": str(store),
        "SIFT_REVIEWERS": str(tmp_path / "reviewers.toml"),
        "SIFT_LLM_ENDPOINT": capture,
        "SIFT_LLM_API_KEY": SECRET,
        "SIFT_IMPORT_ROOTS": str(tmp_path / "private"),
    }.items():
        monkeypatch.setenv(k, v)
    return {"store": store, "private": private, "tmp": tmp_path}


def digest(path: Path) -> str:
    wal = path.with_name(path.name + ".wal")
    return hashlib.sha256(path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")).hexdigest()


def open_page(page: Path, private: Path) -> AppTest:
    """A page as a visitor gets it, with a server path typed into every box that asks for one."""
    at = AppTest.from_file(str(page), default_timeout=60).run()
    boxes = [t for t in [*at.text_input, *at.text_area] if "path" in t.label.lower()]
    for t in boxes:
        t.input(str(private))
    return at.run() if boxes else at


def walk(page: Path, private: Path) -> tuple[AppTest, int]:
    """Click every enabled button a page shows, each on a fresh session (a click that stops the page
    would hide the buttons after it). AppTest cannot click a disabled one; the actions behind those
    check the reviewer themselves (Review's `attempt`)."""
    at = open_page(page, private)
    buttons = [(i, b.key, b.label) for i, b in enumerate(at.button) if not b.disabled]
    for i, key, label in buttons:
        at = open_page(page, private)
        b = at.button(key=key) if key else at.button[i]
        assert b.label == label
        b.click().run()
        assert not at.exception, (page.name, label, at.exception)
    return at, len(buttons)


def test_signed_out_visitor_can_write_nothing_read_no_file_and_call_nobody(site) -> None:
    """Names only, no name typed: every page, every button. The store's bytes do not change,
    nothing is requested from the endpoint, the private file is not imported."""
    before = digest(site["store"])
    total = 0
    for page in PAGES:
        at, clicks = walk(page, site["private"])
        total += clicks
        assert not at.exception, page.name
        assert Capture.seen == [], (page.name, Capture.seen)
        assert digest(site["store"]) == before, f"{page.name} wrote to the store"
        shown = " ".join(str(getattr(e, "value", "")) for e in at.main)
        assert SECRET not in shown and "SIFT_LLM_API_KEY" not in shown
    assert total >= 12  # the walk really clicked (Augment 4, PII 3, Review 2, Import, Dedup, Train, …)
    assert workbench.open(site["store"]).stats().sources == 1
    record(
        "Signed out: no store write, no outbound request, no server file",
        pages=len(PAGES),
        buttons_clicked=total,
        store_bytes_changed=0,
        requests_to_capture_server=len(Capture.seen),
    )


def test_every_page_starts_with_the_gate() -> None:
    """get_wb() carries the sign-in rule, so it must come before any other call of a page."""
    import ast

    for page in PAGES:
        tree = ast.parse(page.read_text())
        calls = [
            n.value.func
            for n in tree.body
            if isinstance(n, ast.Assign | ast.Expr) and isinstance(getattr(n, "value", None), ast.Call)
        ]
        first = calls[0]
        assert isinstance(first, ast.Name) and first.id == "get_wb", f"{page.name} calls something before get_wb()"


def test_magic_is_off_and_no_page_relies_on_it() -> None:
    """Streamlit's magic would write any bare expression of a page (a stray string as markdown) and
    re-parses every page into AST objects on a server thread, which CPython 3.11 can fail under
    concurrency (.streamlit/config.toml says why). So it is off, and no page has a bare expression
    magic would have shown (docstrings aside)."""
    import ast
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["magicEnabled"] is False
    for page in [ROOT / "streamlit_app.py", *PAGES]:
        tree = ast.parse(page.read_text())
        docstrings = {
            id(n.body[0])
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.body
        }
        bare = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Expr)
            and id(n) not in docstrings
            and not isinstance(n.value, ast.Call | ast.Await | ast.Yield | ast.YieldFrom)
        ]
        assert not bare, f"{page.name}: bare expressions at lines {bare} (magic is off: they show nothing)"


def test_with_a_reviewer_list_a_visitor_sees_only_sign_in(site) -> None:
    add_reviewer(site["tmp"] / "reviewers.toml", "ana", "pw")
    before = digest(site["store"])
    # The gate is the same call on every page (test above); three pages with the most to lose.
    for page in ("import_page.py", "augment.py", "review.py"):
        at, clicks = walk(ROOT / "workbench" / "app_pages" / page, site["private"])
        assert [i.value for i in at.info] == ["Sign in in the sidebar to use Sift."], page
        assert clicks == 0 and not at.dataframe and not at.text_input and not at.text, page
    assert Capture.seen == [] and digest(site["store"]) == before
    record("With a reviewer list, a visitor sees only sign-in", pages=3, pages_showing_data=0)
    # The shell: only the sign-in form, no store path.
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
    assert not any("s.duckdb" in str(c.value) for c in at.sidebar.caption)


def test_signed_in_check_endpoint_calls_only_the_configured_one(site) -> None:
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "augment.py"), default_timeout=60)
    at.session_state["reviewer"] = "ana"
    at.run()
    assert not [t for t in at.text_input if t.label in ("Base URL", "API key variable")]
    next(b for b in at.button if b.label == "Check endpoint").click().run()
    assert Capture.seen == ["GET /v1/models"]
    assert any("Reachable" in s.value for s in at.success)


def test_configured_endpoints(tmp_path: Path) -> None:
    assert [(e.name, e.url) for e in configured_endpoints(None, {})] == [("local", "http://127.0.0.1:8000/v1")]
    secrets = {
        "llm": {
            "endpoints": {
                "vllm": {"url": "gpu-box:8000", "model": "qwen", "api_key_env": "VLLM_KEY"},
                "openai": {"url": "https://api.openai.com/v1"},
            }
        }
    }
    eps = configured_endpoints(secrets, {"SIFT_LLM_ENDPOINT": "127.0.0.1:9000", "SIFT_LLM_MODEL": "m"})
    assert [(e.name, e.url, e.model, e.api_key_env) for e in eps] == [
        ("default", "http://127.0.0.1:9000/v1", "m", "SIFT_LLM_API_KEY"),
        ("vllm", "http://gpu-box:8000/v1", "qwen", "VLLM_KEY"),
        ("openai", "https://api.openai.com/v1", None, "SIFT_LLM_API_KEY"),
    ]
    assert eps[2].label == "openai (api.openai.com)"
    with pytest.raises(LLMError, match=r"\[llm.endpoints.x\]: api_key_env must name an environment variable"):
        configured_endpoints({"llm": {"endpoints": {"x": {"url": "h:1", "api_key_env": "A B"}}}}, {})
    with pytest.raises(LLMError, match=r"\[llm.endpoints.y\]: needs url"):
        configured_endpoints({"llm": {"endpoints": {"y": {"model": "m"}}}}, {})


def test_admin_endpoint_list_from_the_cli_reaches_the_page(site, capsys) -> None:
    from workbench import cli

    store = str(site["store"])
    args = ["--store", store, "llm-endpoint", "add", "gpu", "10.0.0.7:8000", "--api-key-env", "GPU_KEY", "--json"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == [
        {"name": "gpu", "url": "http://10.0.0.7:8000/v1", "model": None, "api_key_env": "GPU_KEY"}
    ]
    assert cli.main(["--store", store, "llm-endpoint", "add", "x y", "h:1"]) == 1
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "augment.py"), default_timeout=60)
    at.session_state["reviewer"] = "ana"
    at.run()
    assert at.selectbox(key="aug_endpoint_name").options == [
        f"default ({urlsplit(os.environ['SIFT_LLM_ENDPOINT']).netloc})",
        "gpu (10.0.0.7:8000)",
    ]
    assert cli.main(["--store", store, "llm-endpoint", "remove", "gpu"]) == 0
    assert "no stored endpoints" in capsys.readouterr().out


def test_open_address_needs_sign_in_or_an_explicit_override(tmp_path: Path, monkeypatch, capsys) -> None:
    from workbench.exposure import exposure_problem, main

    store = tmp_path / "s.duckdb"
    monkeypatch.setenv("SIFT_REVIEWERS", str(tmp_path / "reviewers.toml"))
    monkeypatch.delenv("SIFT_ALLOW_OPEN", raising=False)
    for ok in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert exposure_problem(ok, store, root=tmp_path) is None
    for bad in ("0.0.0.0", "", "192.168.1.5", "::"):
        assert "refusing to serve on" in (exposure_problem(bad, store, root=tmp_path) or "")
    assert main(["--address", "0.0.0.0", "--store", str(store)]) == 1
    assert capsys.readouterr().err.startswith("error: refusing to serve on 0.0.0.0: anyone who reaches it")
    # The shell refuses too when Streamlit was started on an open address by hand.
    from streamlit import config

    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()
        assert next(e.value for e in at.error).startswith("refusing to serve on 0.0.0.0")
        assert not at.sidebar.text_input
    finally:
        config.set_option("server.address", "127.0.0.1")
    # Any of: a reviewer list, OIDC in the secrets, or the explicit override.
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[auth]\nclient_id = "x"\n')
    assert exposure_problem("0.0.0.0", store, root=tmp_path) is None
    (tmp_path / ".streamlit" / "secrets.toml").unlink()
    add_reviewer(tmp_path / "reviewers.toml", "ana", "pw")
    assert exposure_problem("0.0.0.0", store, root=tmp_path) is None
    (tmp_path / "reviewers.toml").unlink()
    monkeypatch.setenv("SIFT_ALLOW_OPEN", "1")
    assert exposure_problem("0.0.0.0", store, root=tmp_path) is None


def test_sign_in_backoff_is_per_name_and_address_not_per_session(site, monkeypatch) -> None:
    from workbench import reviewers

    add_reviewer(site["tmp"] / "reviewers.toml", "ana", "pw-ana")
    add_reviewer(site["tmp"] / "reviewers.toml", "bo", "pw-bo")
    now = [1000.0]
    monkeypatch.setattr(reviewers.THROTTLE, "clock", lambda: now[0])  # time passing, without sleeping
    reviewers.THROTTLE.reset()

    def sign_in(name: str, password: str) -> list[str]:
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=60).run()  # a new session
        at.sidebar.text_input[0].input(name)
        at.sidebar.text_input[1].input(password)
        at.sidebar.button[0].click().run()
        return [e.value for e in at.sidebar.error] + [s.value for s in at.sidebar.success]

    try:
        # The counting itself, without a page: per name (any case) and per address.
        t = reviewers.THROTTLE
        for _ in range(3):  # three free failures
            t.failed(t.keys("ana", "10.0.0.1"))
        assert t.wait_s(t.keys("ana", "10.0.0.9")) == 0
        t.failed(t.keys("ana", "10.0.0.1"))  # the fourth locks the name and the address for 1 s
        assert t.wait_s(t.keys("ANA", "10.0.0.9")) == 1.0 and t.wait_s(t.keys("bo", "10.0.0.1")) == 1.0
        assert t.wait_s(t.keys("bo", "10.0.0.9")) == 0
        t.reset()
        # Through the sign-in form, each attempt a new browser session (no address in AppTest).
        for _ in range(4):
            t.failed(t.keys("ana", None))
        locked = ["Too many failed sign-ins: try again in 1 s."]
        assert sign_in("Ana", "pw-ana") == locked  # right password, new session: not even checked
        now[0] += 1.5
        assert sign_in("ana", "pw-ana") == ["Signed in as ana"]
        assert t.wait_s(t.keys("ana", "10.0.0.1")) == 0
        t.failed(t.keys("bo", None))  # the address's fifth failure: 2 s, a success did not reset it
        assert t.wait_s(t.keys("bo", None)) == 2.0
    finally:
        reviewers.THROTTLE.reset()
