"""Whether the app may listen on an address: on a non-loopback address anyone who reaches it is a
visitor, so it needs a reviewer list or OIDC login, unless `SIFT_ALLOW_OPEN=1` says the network is
trusted. `make run` calls this before starting Streamlit; the app checks it again on every page.
No Streamlit here, so the rule can be tested alone.

    python -m workbench.exposure --address 0.0.0.0 --store sift.duckdb   # exit 1 with the reason
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import tomllib
from pathlib import Path

from workbench.reviewers import reviewers_path


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; an empty address (Streamlit's default) is every interface."""
    address = address.strip().strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def oidc_configured(root: Path | None = None) -> bool:
    """`[auth]` in `.streamlit/secrets.toml` (project folder or home), as Streamlit reads it."""
    for folder in (root or Path.cwd(), Path.home()):
        f = folder / ".streamlit" / "secrets.toml"
        try:
            if "auth" in tomllib.loads(f.read_text(encoding="utf-8")):
                return True
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
    return False


def exposure_problem(address: str, store: str | Path, *, root: Path | None = None) -> str | None:
    """Why the app must not listen on `address`, or None when it may."""
    if is_loopback(address) or os.environ.get("SIFT_ALLOW_OPEN") == "1":
        return None
    if reviewers_path(store).exists() or oidc_configured(root):
        return None
    shown = address or "every interface"
    return (
        f"refusing to serve on {shown}: anyone who reaches it could act without signing in. Add a reviewer "
        "list (`sift reviewer add NAME --admin`) or OIDC ([auth] in .streamlit/secrets.toml), or set "
        "SIFT_ALLOW_OPEN=1 if the network is trusted"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workbench.exposure")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--store", default=os.environ.get("SIFT_STORE", "sift.duckdb"))
    args = p.parse_args(argv)
    problem = exposure_problem(args.address, args.store)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
