"""Scores of a generated answer against the reference: pure functions, no model needed.

- exact match: equal after trimming whitespace;
- token F1: overlap of lower-cased word tokens (SQuAD style);
- ROUGE-L: F-measure of the longest common subsequence of word tokens;
- JSON: where the reference carries a JSON object (the whole answer, or its last non-empty line as
  in the ticket-triage data), whether the prediction carries one too and how many of the
  reference's fields it got right.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _WORD.findall((text or "").lower())


def exact_match(pred: str, ref: str) -> float:
    return float((pred or "").strip() == (ref or "").strip())


def token_f1(pred: str, ref: str) -> float:
    p, r = tokens(pred), tokens(ref)
    if not p and not r:
        return 1.0
    if not p or not r:
        return 0.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    p, r = tokens(pred), tokens(ref)
    if not p and not r:
        return 1.0
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def extract_json(text: str) -> dict[str, Any] | None:
    """A JSON object from the whole text, else its last non-empty line, else its last {...} block."""
    t = (text or "").strip()
    if not t:
        return None
    candidates = [t]
    lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
    if lines:
        candidates.append(lines[-1])
    fenced = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", t, re.S)
    candidates += fenced[::-1]
    start = t.rfind("{")
    if start >= 0:
        candidates.append(t[start:])
    for c in candidates:
        try:
            obj = json.loads(c)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def json_scores(pred: str, ref: str) -> dict[str, float] | None:
    """None when the reference holds no JSON object; else validity and per-field accuracy."""
    want = extract_json(ref)
    if want is None:
        return None
    got = extract_json(pred)
    if got is None:
        return {"json_valid": 0.0, "json_field_accuracy": 0.0, "json_exact": 0.0}
    right = sum(1 for k, v in want.items() if k in got and got[k] == v)
    return {
        "json_valid": 1.0,
        "json_field_accuracy": right / len(want) if want else 1.0,
        "json_exact": float(got == want),
    }


def score(pred: str, ref: str) -> dict[str, float]:
    out = {"exact_match": exact_match(pred, ref), "token_f1": token_f1(pred, ref), "rouge_l": rouge_l(pred, ref)}
    js = json_scores(pred, ref)
    if js is not None:
        out.update(js)
    return out


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the rows that have it (JSON metrics only over JSON references)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for r in rows:
        for k, v in r.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
    out = {k: round(sums[k] / counts[k], 4) for k in sums}
    out["n"] = len(rows)
    if "json_valid" in counts:
        out["n_json"] = counts["json_valid"]
    return out


# ---------------------------------------------------------------- tool calls


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """The function calls written in a generated answer, in order: every JSON object in the text
    that names a function (`{"name", "arguments"}` as Qwen's `<tool_call>` blocks and Hermes write
    them, `{"name", "parameters"}` as Llama 3.1 does, or `{"function": {...}}`), arguments as an
    object (a JSON string of one is decoded)."""
    out: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    t = text or ""
    k = t.find("{")
    while k >= 0:
        try:
            obj, end = decoder.raw_decode(t, k)
        except json.JSONDecodeError:
            k = t.find("{", k + 1)
            continue
        if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
            obj = obj["function"]
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            args = obj.get("arguments", obj.get("parameters", {}))
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    pass
            out.append({"name": obj["name"], "arguments": args})
        k = t.find("{", end)
    return out


def tool_call_scores(pred: str, reference: list[dict[str, Any]]) -> dict[str, float]:
    """How well a generated answer reproduces the reference calls, position by position:
    `tool_call_valid` (it holds at least one parseable call), `tool_name_accuracy` (function name
    exact), `tool_args_exact` (name right and arguments JSON-equal), `tool_arg_accuracy` (share of
    the reference's arguments with an equal value in the call at the same position)."""
    got = parse_tool_calls(pred)
    n = len(reference) or 1
    names = args_exact = arg_total = arg_right = 0
    for i, ref in enumerate(reference):
        call = got[i] if i < len(got) else None
        ref_args = ref.get("arguments")
        want: dict[str, Any] = ref_args if isinstance(ref_args, dict) else {}
        arg_total += len(want)
        if call is None:
            continue
        names += int(call["name"] == ref["name"])
        have = call["arguments"] if isinstance(call["arguments"], dict) else {}
        args_exact += int(call["name"] == ref["name"] and have == ref_args)
        arg_right += sum(1 for key, v in want.items() if key in have and have[key] == v)
    return {
        "tool_call_valid": float(bool(got)),
        "tool_name_accuracy": names / n,
        "tool_args_exact": args_exact / n,
        "tool_arg_accuracy": arg_right / arg_total if arg_total else float(args_exact == len(reference)),
    }
