"""The figures RELIABILITY.md quotes: each reliability test reports what it ran (cases, kills,
files scanned, leaks found) on one `FIGURE {...}` line (`pytest -s` shows it), and appends it to
the JSON-lines file `$SIFT_RELIABILITY_OUT` when that is set."""

from __future__ import annotations

import json
import os
from typing import Any


def record(promise: str, **figures: Any) -> None:
    line = json.dumps({"promise": promise, **figures}, sort_keys=False)
    print(f"FIGURE {line}")
    out = os.environ.get("SIFT_RELIABILITY_OUT")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(line + "\n")
