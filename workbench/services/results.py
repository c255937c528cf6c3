"""Typed results at the service seam.

A public service method returns a frozen dataclass deriving from `Result`: callers (CLI formatters,
pages, Python users) read attributes, and `to_dict()` gives the plain dict that `--json` prints —
the contract. `to_dict()` keeps the fields in declaration order (so a result's fields are declared
in the order its JSON keys have always had), turns nested results and lists or dicts of them into
plain values, and leaves out a field declared with `optional()` while it is None (a key that only
some results carry). Where a key's presence follows a rule that is not "None means absent", the
class overrides `to_dict()` and says why.

Rows of a list whose columns are data (a page of conversations, a table of findings) stay
`dict[str, Any]`: the result types its shape, not every row's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Result:
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = plain(value)
        return out


def plain(value: Any) -> Any:
    """`value` with every `Result` inside it turned into its dict (lists and dicts rebuilt)."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def optional(default: Any = None) -> Any:
    """A field whose key is left out of `to_dict()` while its value is None."""
    return field(default=default, metadata={"omit_none": True})


__all__ = ["Result", "optional", "plain"]
