"""What changed between two revisions of a conversation, turn by turn.

Turns are aligned first (a deleted or inserted turn shifts the rest), then each changed turn gets a
line diff of its text. Pure: message dicts in (as `Message.to_dict()` writes them), plain data out.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TurnChange:
    """One aligned turn: `op` is equal, changed, deleted or inserted; indexes are 0-based."""

    op: str
    old_index: int | None
    new_index: int | None
    role: str
    diff: str = ""
    old_text: str | None = None  # a changed turn's whole text before and after (for a word diff)
    new_text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "op": self.op,
            "old_index": self.old_index,
            "new_index": self.new_index,
            "role": self.role,
            "diff": self.diff,
        }
        if self.op == "changed":
            out.update(old_text=self.old_text, new_text=self.new_text)
        return out


def turn_text(m: dict[str, Any]) -> str:
    """Everything an edit can change in a turn, as text: content, tool calls, reasoning."""
    content = m.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "\n".join(p.get("text") or f"[{p.get('type')}]" for p in content)
    extra = [f"[tool call] {c.get('name')}({c.get('arguments')})" for c in m.get("tool_calls") or ()]
    if m.get("reasoning"):
        extra.insert(0, f"[reasoning] {m['reasoning']}")
    return "\n".join([text, *extra]) if extra else text


def _key(m: dict[str, Any]) -> str:
    return json.dumps(m, sort_keys=True, ensure_ascii=False)


def _lines(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in (text.splitlines() or [""]))


def diff_turns(old: list[dict[str, Any]], new: list[dict[str, Any]], *, context: int = 2) -> list[TurnChange]:
    """Align `old` and `new` turn lists and diff the turns that changed."""
    out: list[TurnChange] = []
    sm = difflib.SequenceMatcher(a=[_key(m) for m in old], b=[_key(m) for m in new], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            out += [TurnChange("equal", i1 + k, j1 + k, old[i1 + k]["role"]) for k in range(i2 - i1)]
            continue
        # A replaced block pairs turns one to one while the roles agree; the rest are deletions
        # or insertions.
        i, j = i1, j1
        while i < i2 and j < j2 and old[i]["role"] == new[j]["role"]:
            ta, tb = turn_text(old[i]), turn_text(new[j])
            udiff = difflib.unified_diff(
                ta.splitlines(), tb.splitlines(), f"turn {i + 1}", f"turn {j + 1}", n=context, lineterm=""
            )
            out.append(TurnChange("changed", i, j, new[j]["role"], "\n".join(udiff), ta, tb))
            i, j = i + 1, j + 1
        out += [TurnChange("deleted", k, None, old[k]["role"], _lines(turn_text(old[k]), "- ")) for k in range(i, i2)]
        out += [TurnChange("inserted", None, k, new[k]["role"], _lines(turn_text(new[k]), "+ ")) for k in range(j, j2)]
    return out


def summarize(changes: list[TurnChange]) -> str:
    """'turn 2 changed, turn 4 deleted' (1-based, as a reviewer counts turns)."""
    parts = []
    for c in changes:
        if c.op == "changed":
            parts.append(f"turn {c.new_index + 1} changed")  # type: ignore[operator]
        elif c.op == "deleted":
            parts.append(f"turn {c.old_index + 1} deleted")  # type: ignore[operator]
        elif c.op == "inserted":
            parts.append(f"turn {c.new_index + 1} inserted")  # type: ignore[operator]
    return ", ".join(parts) or "no change"
