"""The real app for the reliability tests: `streamlit run streamlit_app.py` on a free port over a
store, and a client that loads its pages the way a browser does (a websocket session that runs the
page's script against the store), without a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT
from workbench.app_server import healthy, wait_until_up

PAGES = ("", "import", "review", "progress", "lineage", "versions", "dedup", "validate", "pii", "train", "compare")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class App:
    url: str
    port: int
    store: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return r.status, r.read()

    def healthy(self) -> bool:
        return healthy(self.url, timeout=5)

    def load(self, page: str = "", timeout: float = 60) -> dict[str, object]:
        """Open a session on `page`, run its script to the end; what it rendered and any exception."""
        return asyncio.run(_session(self.port, page, timeout))


@contextlib.contextmanager
def serve(store: Path, tmp: Path, env: dict[str, str] | None = None) -> Iterator[App]:
    port = free_port()
    log = tmp / f"streamlit-{port}.log"
    e = {
        **os.environ,
        "SIFT_STORE": str(store),
        "SIFT_REVIEWERS": str(tmp / "no-reviewer-list.toml"),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=out, stderr=subprocess.STDOUT)
    app = App(f"http://127.0.0.1:{port}", port, store, log, proc)
    if not wait_until_up(app.url, proc, timeout=90, probe_timeout=5):
        proc.kill()
        raise AssertionError(f"streamlit did not start: {log.read_text(errors='replace')[-2000:]}")
    try:
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _session(port: int, page: str, timeout: float) -> dict[str, object]:
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    out: dict[str, object] = {"page": page, "elements": 0, "exceptions": [], "errors": [], "finished": False}
    uri = f"ws://127.0.0.1:{port}/_stcore/stream"
    async with websockets.connect(uri, subprotocols=["streamlit"], max_size=None, open_timeout=timeout) as ws:  # type: ignore[list-item]
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_name = page
        await ws.send(msg.SerializeToString())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            kind = fm.WhichOneof("type")
            if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                out["elements"] = int(out["elements"]) + 1  # type: ignore[call-overload]
                el = fm.delta.new_element
                if el.WhichOneof("type") == "exception":
                    out["exceptions"].append(f"{el.exception.type}: {el.exception.message}")  # type: ignore[attr-defined]
                if el.WhichOneof("type") == "alert" and el.alert.format == 1:  # st.error: a domain error shown
                    out["errors"].append(el.alert.body)  # type: ignore[attr-defined]
            if kind == "script_finished":
                out["finished"] = True
                break
    return out


@dataclass
class Load:
    """Background users of the app: each loops over the pages (a websocket session per page) and
    the health endpoint until stopped."""

    app: App
    users: int = 2
    sessions: list[dict[str, object]] = field(default_factory=list)
    health: list[bool] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _user(self, k: int) -> None:
        i = k
        while not self._stop.is_set():
            page = PAGES[i % len(PAGES)]
            i += 1
            try:
                self.sessions.append(self.app.load(page))
                self.health.append(self.app.healthy())
                self.app.get("/")  # the page shell, as a browser first fetches it
            except Exception as e:
                self.errors.append(f"{page}: {type(e).__name__}: {e}")

    def __enter__(self) -> Load:
        for k in range(self.users):
            t = threading.Thread(target=self._user, args=(k * 3,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)
