"""Conversations → token ids and labels with the model's own chat template.

Each conversation renders once with the template; the character span of every assistant turn is
found by rendering the conversation up to that turn (with and without the generation prompt), and
a token is trained on when it lies in such a span (assistant-only loss). Everything else —
system prompt, user turns, tool results, the template's role headers — gets label -100.

Templates that know nothing of tools or tool calls (SmolLM2's ChatML is one) would silently drop
them, so they are folded into text first: tool schemas into the system turn, calls into the
assistant turn as `<tool_call>{json}</tool_call>` lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from curation.errors import StageError
from curation.formats import to_openai
from curation.records import Conversation

IGNORE = -100


class RenderError(StageError):
    pass


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


@dataclass(frozen=True)
class Prompt:
    """One eval item: the history up to the last assistant turn, and that turn as the reference."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    reference: str


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text") or "" for p in content if isinstance(p, dict))


def template_messages(conv: Conversation, template: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages (and tools) in the shape chat templates expect, folding what the template ignores."""
    d = to_openai(conv)
    knows_calls = "tool_calls" in template
    knows_tools = "tools" in template
    msgs: list[dict[str, Any]] = []
    for m in d["messages"]:
        out: dict[str, Any] = {"role": m["role"], "content": _text(m.get("content"))}
        calls = m.get("tool_calls") or []
        if calls:
            if knows_calls:
                out["tool_calls"] = [
                    {
                        "type": "function",
                        "function": {"name": c["function"]["name"], "arguments": _args(c["function"]["arguments"])},
                    }
                    for c in calls
                ]
            else:
                lines = [
                    "<tool_call>"
                    + json.dumps(
                        {"name": c["function"]["name"], "arguments": _args(c["function"]["arguments"])},
                        ensure_ascii=False,
                    )
                    + "</tool_call>"
                    for c in calls
                ]
                out["content"] = "\n".join([out["content"], *lines]) if out["content"] else "\n".join(lines)
        if m.get("tool_call_id") and knows_calls:
            out["tool_call_id"] = m["tool_call_id"]
        if m.get("name"):
            out["name"] = m["name"]
        msgs.append(out)
    tools = d.get("tools")
    if tools and not knows_tools:
        listing = "You can call these tools:\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        if msgs and msgs[0]["role"] == "system":
            msgs[0] = {**msgs[0], "content": msgs[0]["content"] + "\n\n" + listing}
        else:
            msgs.insert(0, {"role": "system", "content": listing})
        tools = None
    return msgs, tools or None


def _args(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def _render(tok: Any, msgs: list[dict[str, Any]], tools: list[dict[str, Any]] | None, gen: bool) -> str:
    kw: dict[str, Any] = {"tokenize": False, "add_generation_prompt": gen}
    if tools:
        kw["tools"] = tools
    try:
        return str(tok.apply_chat_template(msgs, **kw))
    except Exception as e:
        raise RenderError(f"the chat template cannot render this conversation: {e}") from None


def render(tok: Any, conv: Conversation, max_len: int, *, assistant_only: bool = True) -> Example:
    """Token ids and labels of one conversation, cut to `max_len` tokens."""
    template = tok.chat_template or ""
    if not template:
        raise RenderError("the tokenizer has no chat template")
    msgs, tools = template_messages(conv, template)
    full = _render(tok, msgs, tools, False)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start_text = _render(tok, msgs[:i], tools, True) if i else ""
        end_text = _render(tok, msgs[: i + 1], tools, False)
        if not full.startswith(end_text) or not end_text.startswith(start_text):
            # The template rewrites earlier turns (e.g. drops old reasoning): fall back to the turn's
            # own text located after the prompt.
            idx = full.find(m["content"], len(start_text) if full.startswith(start_text) else 0)
            if idx < 0:
                continue
            spans.append((idx, idx + len(m["content"])))
            continue
        spans.append((len(start_text), len(end_text)))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    if assistant_only:
        labels = [IGNORE] * len(ids)
        si = 0
        for t, (a, b) in enumerate(offsets):
            while si < len(spans) and spans[si][1] <= a:
                si += 1
            if si < len(spans) and a >= spans[si][0] and b <= spans[si][1] and b > a:
                labels[t] = ids[t]
        # The template's own whitespace after the end-of-turn token belongs to no one; a turn's
        # end marker must be trained so the model learns to stop.
    else:
        labels = list(ids)
    return Example(ids[:max_len], labels[:max_len], len(ids) > max_len)


def render_all(
    tok: Any, convs: list[Conversation], max_len: int, *, assistant_only: bool = True
) -> tuple[list[Example], dict[str, int]]:
    """Render a split; conversations left with no trained token are dropped and counted."""
    out: list[Example] = []
    stats = {"conversations": len(convs), "dropped_no_target": 0, "truncated": 0, "tokens": 0, "trained_tokens": 0}
    for c in convs:
        ex = render(tok, c, max_len, assistant_only=assistant_only)
        stats["truncated"] += ex.truncated
        if ex.n_trained == 0:
            stats["dropped_no_target"] += 1
            continue
        stats["tokens"] += len(ex.input_ids)
        stats["trained_tokens"] += ex.n_trained
        out.append(ex)
    return out, stats


def eval_prompts(convs: list[Conversation], template: str) -> list[Prompt]:
    """History up to the last assistant turn, and that turn's text as the reference."""
    out: list[Prompt] = []
    for c in convs:
        msgs, tools = template_messages(c, template)
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            continue
        out.append(Prompt(msgs[:last], tools or [], msgs[last]["content"]))
    return out
