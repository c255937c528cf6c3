"""Clean items (a ticket, its labels and reply) and their rows in each dialect."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from types import MappingProxyType
from typing import Any

from curation.formats import DIALECTS

from .phrases import (
    _ACCESS_TIPS,
    _ACKS,
    _AREA_NAMES,
    _BACKGROUNDS,
    _BILLING_NAMES,
    _CLOSERS,
    _CONTEXTS,
    _GREETINGS,
    _HOWTO_ANSWERS,
    _SIGNOFFS,
    _TIPS,
    _ch,
    _ri,
    _Slots,
)
from .vocab import (
    _ALLOWED_PRIORITIES,
    _CORES,
    _CUES,
    _DETAILS,
    _LEADS,
    ALPACA_INSTRUCTION,
    CATEGORIES,
    LABEL_KEYS,
    PRODUCT_AREAS,
    SYSTEM_PROMPT,
)

# --------------------------------------------------------------------------
# Clean generation
# --------------------------------------------------------------------------


def labels_json(labels: Mapping[str, str]) -> str:
    """Compact JSON of the three labels in the canonical key order."""
    values = [labels[k] for k in LABEL_KEYS]
    if all(v.isidentifier() for v in values):  # fast path: needs no escaping
        return '{{"category":"{}","priority":"{}","product_area":"{}"}}'.format(*values)
    return json.dumps(dict(zip(LABEL_KEYS, values, strict=True)), separators=(",", ":"))


def assistant_text(item: Mapping[str, Any]) -> str:
    """The assistant turn for ``item``: its reply, a newline, the label JSON."""
    return f"{item['reply']}\n{labels_json(item['labels'])}"


def parse_labels(text: str) -> dict[str, str] | None:
    """Parse the label JSON from the last non-empty line of an assistant turn.

    Returns ``None`` when that line is not a JSON object with exactly the three
    label keys.
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        obj = json.loads(lines[-1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or set(obj) != set(LABEL_KEYS):
        return None
    return {k: obj[k] for k in LABEL_KEYS}


def _typos(text: str, rng: random.Random, count: int) -> str:
    """Swap, drop or double one letter in up to ``count`` random plain words."""
    words = text.split(" ")
    for _ in range(count):
        i = _ri(rng, 0, len(words) - 1)
        w = words[i]
        if len(w) < 5 or not w.isalpha():
            continue
        j = _ri(rng, 1, len(w) - 2)
        op = _ri(rng, 0, 2)
        if op == 0:
            w = w[: j - 1] + w[j] + w[j - 1] + w[j + 1 :]
        elif op == 1:
            w = w[:j] + w[j + 1 :]
        else:
            w = w[:j] + w[j] + w[j:]
        words[i] = w
    return " ".join(words)


def _make_reply(rng: random.Random, category: str, area: str, priority: str, slots: _Slots) -> str:
    fmt = {"area_name": _AREA_NAMES[area]}
    parts = [_ch(rng, _ACKS[category]).format_map(fmt)]
    if category == "bug":
        parts.append(
            "Could you send us a debug bundle (`quill debug zip`) from the affected cluster so we can reproduce it?"
        )
        parts.append(_TIPS[area])
    elif category == "performance":
        parts.append(_TIPS[area])
        if rng.random() < 0.5:
            parts.append("A time window when it was slow would help us line it up.")
    elif category == "billing":
        parts.append(
            f"I've asked our billing team to review the {_BILLING_NAMES[area]} "
            "charges on your account and correct anything that's wrong."
        )
    elif category == "how_to":
        parts.append(_HOWTO_ANSWERS[area])
    elif category == "outage":
        parts.append("Our on-call engineers have been paged, and updates will be posted at status.quilldb.example.")
        if rng.random() < 0.5:
            parts.append(_TIPS[area])
    elif category == "feature_request":
        parts.append(
            f"I've logged it with the team that owns {_AREA_NAMES[area]}; we can't "
            "promise a timeline, but requests like this shape our roadmap."
        )
    else:
        parts.append(_ACCESS_TIPS[area])
    parts.append(_ch(rng, _CLOSERS[priority]))
    return " ".join(parts)


def _fill(template: str, slots: _Slots) -> str:
    return template.format_map(slots) if "{" in template else template


def _make_item(rng: random.Random, item_id: str) -> dict[str, Any]:
    category = _ch(rng, CATEGORIES)
    area = _ch(rng, PRODUCT_AREAS)
    priority = _ch(rng, _ALLOWED_PRIORITIES[category])
    slots = _Slots(rng)

    body = _fill(_ch(rng, _CORES[area][category]), slots)
    if rng.random() < 0.25:
        body = _typos(body, rng, _ri(rng, 1, 2))
    if rng.random() < 0.55:
        body = f"{_ch(rng, _LEADS[category])} {body}"
    # 0-3 consecutive detail sentences; consecutive (not sampled) keeps this cheap.
    roll = rng.random()
    n_details = 0 if roll < 0.35 else 1 if roll < 0.7 else 2 if roll < 0.9 else 3
    pool = _DETAILS[category]
    first = _ri(rng, 0, len(pool) - 1)
    details = [_fill(pool[(first + k) % len(pool)], slots) for k in range(n_details)]
    sentences = [body, *details]
    if rng.random() < 0.12:
        sentences.insert(1, _fill(_ch(rng, _BACKGROUNDS), slots))
    if rng.random() < 0.45:
        sentences.insert(0, _fill(_ch(rng, _CONTEXTS), slots))
    text = " ".join(sentences)

    cue = _fill(_ch(rng, _CUES[priority]), slots)
    if priority in ("urgent", "high") and rng.random() < 0.35:
        text = f"{cue} {text}"
    else:
        text = text + _ch(rng, (" ", " ", "\n")) + cue
    if rng.random() < 0.6:
        text = _ch(rng, _GREETINGS) + _ch(rng, (" ", "\n")) + text
    if rng.random() < 0.5:
        text = text + _ch(rng, ("\n", "\n\n", " ")) + _ch(rng, _SIGNOFFS)
    if rng.random() < 0.07:
        text = text.lower()

    return {
        "id": item_id,
        "ticket": text,
        "reply": _make_reply(rng, category, area, priority, slots),
        "labels": {"category": category, "priority": priority, "product_area": area},
    }


def _iter_items(rng: random.Random, prefix: str, exclude: frozenset[str] = frozenset()) -> Iterator[dict[str, Any]]:
    """Endless stream of items whose ticket texts are unique (and not excluded)."""
    seen = set(exclude)
    index = 0
    while True:
        item = _make_item(rng, f"{prefix}-{index:06d}")
        if item["ticket"] in seen:
            continue
        seen.add(item["ticket"])
        index += 1
        yield item


def generate_clean(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Return ``n`` clean triage items, deterministic for ``seed``.

    Each item is ``{"id", "ticket", "reply", "labels": {"category", "priority",
    "product_area"}}``; ticket texts are unique within one call.
    """
    return list(islice(_iter_items(random.Random(seed), f"t{seed}"), n))


def _gold_items(n: int, seed: int) -> list[dict[str, Any]]:
    # A string seed gives a stream disjoint from the pool's integer seed.
    return list(islice(_iter_items(random.Random(f"gold:{seed}"), f"gold{seed}"), n))


# --------------------------------------------------------------------------
# Dialects
# --------------------------------------------------------------------------

_SHAREGPT_ROLES: Mapping[str, str] = MappingProxyType({"system": "system", "user": "human", "assistant": "gpt"})


def _turns(ticket: str, answer: str, system: bool = True) -> list[dict[str, Any]]:
    turns = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
    turns.append({"role": "user", "content": ticket})
    turns.append({"role": "assistant", "content": answer})
    return turns


def lookup_cluster_tool() -> dict[str, Any]:
    """OpenAI-style tool schema for the ``lookup_cluster`` function."""
    return {
        "type": "function",
        "function": {
            "name": "lookup_cluster",
            "description": "Look up a QuillDB cluster's status, region, version and node count.",
            "parameters": {
                "type": "object",
                "properties": {"cluster": {"type": "string", "description": "Cluster name."}},
                "required": ["cluster"],
            },
        },
    }


def _render(turns: Sequence[Mapping[str, Any]], dialect: str) -> dict[str, Any]:
    if dialect == "openai":
        out: dict[str, Any] = {"messages": [dict(t) for t in turns]}
        if any(t.get("tool_calls") for t in turns):
            out["tools"] = [lookup_cluster_tool()]
        return out
    if dialect == "sharegpt":
        return {"conversations": [{"from": _SHAREGPT_ROLES[t["role"]], "value": t["content"]} for t in turns]}
    if dialect == "alpaca":
        by_role = {t["role"]: t["content"] for t in turns}
        roles = [t["role"] for t in turns if t["role"] != "system"]
        if roles != ["user", "assistant"]:
            raise ValueError(f"alpaca needs one user then one assistant turn: {roles}")
        out = {
            "instruction": ALPACA_INSTRUCTION,
            "input": by_role["user"],
            "output": by_role["assistant"],
        }
        if "system" in by_role:
            out["system"] = by_role["system"]
        return out
    raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


def ticket_row(item: Mapping[str, Any], dialect: str, *, system: bool = True) -> dict[str, Any]:
    """A clean ticket item as one source row in ``dialect`` (a row as a user's file holds it).

    Not ``curation.formats.to_dialect``: that writes a ``Conversation``, and its Alpaca row puts
    the user turn in ``instruction``; a ticket row keeps the fixed triage instruction there and the
    ticket in ``input``, as instruction datasets do. ``openai``: ``{"messages": [system?, user, assistant]}``;
    ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt",
    "value"}]}``; ``alpaca``: ``{"instruction", "input", "output"}`` plus a
    ``"system"`` key when ``system`` is true.
    """
    answer = assistant_text(item)
    # Built directly rather than through _render: this is the benchmark hot path.
    if dialect == "openai":
        return {"messages": _turns(item["ticket"], answer, system)}
    if dialect == "sharegpt":
        head = [{"from": "system", "value": SYSTEM_PROMPT}] if system else []
        return {"conversations": [*head, {"from": "human", "value": item["ticket"]}, {"from": "gpt", "value": answer}]}
    if dialect == "alpaca":
        out = {"instruction": ALPACA_INSTRUCTION, "input": item["ticket"], "output": answer}
        if system:
            out["system"] = SYSTEM_PROMPT
        return out
    raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")


def generate_conversations(n: int, seed: int = 0, dialect: str = "openai") -> Iterator[dict[str, Any]]:
    """Lazily yield ``n`` clean conversations in ``dialect`` (for benchmarks).

    Equivalent to ``ticket_row(item, dialect)`` over ``generate_clean(n, seed)``.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
    for item in islice(_iter_items(random.Random(seed), f"t{seed}"), n):
        yield ticket_row(item, dialect)
