"""Regenerate the bundled QuillDB ticket-triage sample set.

Usage: ``python datasets/generate.py [--out datasets/sample] [--seed 7]``

There is deliberately no ``__init__.py`` in ``datasets/``: it must never shadow
the Hugging Face ``datasets`` library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run as a script, datasets/ (which holds the `tickets` generator) is on sys.path; the repo root
# holds `curation`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tickets import write_sample_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "datasets" / "sample")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    summary = write_sample_set(args.out, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
