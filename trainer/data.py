"""Conversations → token ids and labels with the model's own chat template.

Rendering and the loss mask come from the renderer validation uses (`curation.render`): the same
messages (`to_template_messages`), the same template pick (a tool-use template when tools are
given), the same assistant spans (the template's `{% generation %}` blocks where it has them, else
prefix renders: from the end of the history plus generation prompt to the end of the turn, so each
turn's end-of-turn marker is trained and the model learns to stop). What is validated is what is
trained. A conversation the template refuses is dropped and counted, as is one with no trained
token (validation flags both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curation.errors import StageError
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
    # The reference turn's function calls ({"name", "arguments"}) for tool-call evaluation.
    calls: tuple[dict[str, Any], ...] = ()


def _tools(conv: Conversation) -> list[dict[str, Any]] | None:
    return [dict(t) for t in conv.tools] if conv.tools else None


def system_policy(cfg_value: str, manifest: dict[str, Any]) -> str:
    """The system-prompt policy to render with: the config's, else the one the version was validated
    with (its manifest's tokenizer record), else keep."""
    if cfg_value:
        return cfg_value
    version = manifest.get("version")
    tokenizer = version.get("tokenizer") if isinstance(version, dict) else None
    policy = tokenizer.get("system_prompt") if isinstance(tokenizer, dict) else None
    return policy if policy in ("keep", "fold", "drop") else "keep"


def renderer_for(tok: Any, system_prompt: str = "keep") -> Any:
    """Validation's renderer over this tokenizer: what is validated is what is trained."""
    from curation.render import ChatRenderer, ValidateError

    try:
        return ChatRenderer(tok, system_prompt=system_prompt)
    except ValidateError as e:
        raise RenderError(str(e)) from None


def render_all(
    tok: Any, convs: list[Conversation], max_len: int, *, assistant_only: bool = True, renderer: Any = None
) -> tuple[list[Example], dict[str, int]]:
    """Render a split with validation's renderer and loss-mask spans; conversations the template
    refuses, or with no trained token, are dropped and counted."""
    from curation.render import apply_system_policy, to_template_messages
    from curation.validate import measure

    renderer = renderer or renderer_for(tok)
    out: list[Example] = []
    stats = {
        "conversations": len(convs),
        "dropped_template_error": 0,
        "dropped_no_target": 0,
        "truncated": 0,
        "tokens": 0,
        "trained_tokens": 0,
    }
    for conv, m in zip(convs, measure(convs, renderer), strict=True):
        if m.tokens is None:
            stats["dropped_template_error"] += 1
            continue
        tools = _tools(conv)
        shown = apply_system_policy(conv, renderer.system_prompt)
        text = renderer.render(to_template_messages(shown), tools, template=renderer.template_for(tools))
        ids: list[int] = list(tok(text, add_special_tokens=False)["input_ids"])
        if len(ids) != m.tokens:  # validation's token map and the tokenizer disagree: trust neither
            raise RenderError(f"tokenizing the render gave {len(ids)} tokens, validation counted {m.tokens}")
        if assistant_only:
            labels = [IGNORE] * len(ids)
            for a, b in m.spans:
                labels[a:b] = ids[a:b]
        else:
            labels = list(ids)
        ex = Example(ids[:max_len], labels[:max_len], len(ids) > max_len)
        stats["truncated"] += ex.truncated
        if ex.n_trained == 0:
            stats["dropped_no_target"] += 1
            continue
        stats["tokens"] += len(ex.input_ids)
        stats["trained_tokens"] += ex.n_trained
        out.append(ex)
    return out, stats


def render(tok: Any, conv: Conversation, max_len: int, *, assistant_only: bool = True) -> Example:
    """One conversation's token ids and labels, cut to `max_len` tokens."""
    got, stats = render_all(tok, [conv], max_len, assistant_only=assistant_only)
    if stats["dropped_template_error"]:
        raise RenderError("the chat template refuses this conversation")
    if not got:
        return Example([], [], False)
    return got[0]


def eval_prompts(convs: list[Conversation], system_prompt: str = "keep") -> list[Prompt]:
    """History up to the last assistant turn (as templates expect it, under the system-prompt
    policy), and that turn's text as the reference."""
    from curation.render import apply_system_policy, to_template_messages

    out: list[Prompt] = []
    for c in (apply_system_policy(c, system_prompt) for c in convs):
        last = max((i for i, m in enumerate(c.messages) if m.role == "assistant"), default=None)
        if last is None or last == 0 or not c.messages[last].text.strip():
            continue
        msgs = to_template_messages(c)
        out.append(Prompt(msgs[:last], _tools(c) or [], c.messages[last].text))
    return out


def tool_call_prompts(convs: list[Conversation], system_prompt: str = "keep") -> list[Prompt]:
    """One eval item per assistant turn that calls tools: the history before it, and its calls
    (arguments parsed from JSON where they are JSON) as the reference."""
    import json

    from curation.render import apply_system_policy, to_template_messages

    out: list[Prompt] = []
    for c in (apply_system_policy(c, system_prompt) for c in convs):
        msgs = None
        for i, m in enumerate(c.messages):
            if m.role != "assistant" or not m.tool_calls or i == 0:
                continue
            msgs = msgs or to_template_messages(c)
            calls = []
            for call in m.tool_calls:
                try:
                    args: Any = json.loads(call.arguments)
                except (json.JSONDecodeError, TypeError):
                    args = call.arguments
                calls.append({"name": call.name, "arguments": args})
            out.append(Prompt(msgs[:i], _tools(c) or [], m.text, tuple(calls)))
    return out
