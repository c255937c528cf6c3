"""Waiting for a Streamlit app started in a subprocess (`make demo`'s screenshot, the e2e and
reliability tests): one loop instead of one per caller."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the app at `url` answers its health check (`/_stcore/health` says ok)."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return bool(r.status == 200 and r.read() == b"ok")
    except OSError:
        return False


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0, probe_timeout: float = 2.0) -> bool:
    """Poll `url` until the app is healthy: True; False as soon as `proc` exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not healthy(url, probe_timeout):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True
