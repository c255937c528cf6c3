"""Loss masks for the templates people fine-tune (issue 18): Qwen3's re-rendered history, stop
tokens, Llama 3.1's escaped tool results, Gemma's system prompt, default system prompts, and the
trainer using the very same spans. Real templates (trl's public copies) over the embedded SmolLM2
vocabulary, on the shared corpora."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from curation.formats import parse_file
from curation.records import Conversation, Message, ToolCall
from curation.render import ChatRenderer, apply_system_policy, to_template_messages
from curation.validate import ValidateConfig, judge, measure
from tests.chat_templates import CHATML_GENERATION, GEMMA, with_template


def _trl_template(name: str) -> str:
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("trl is not installed")
    return (Path(spec.submodule_search_locations[0]) / "chat_templates" / f"{name}.jinja").read_text()


@pytest.fixture(scope="module")
def tok() -> Any:
    from curation.models import load_tokenizer

    return load_tokenizer()


_COPIES: dict[str, Any] = {}


def renderer(tok: Any, template: str, policy: str = "keep") -> ChatRenderer:
    """A renderer over a copy of the tokenizer with `template`; one copy per template (~0.5 s each)."""
    if template not in _COPIES:
        _COPIES[template] = with_template(tok, template)
    return ChatRenderer(_COPIES[template], system_prompt=policy)


def convs_of(path: Path) -> list[Conversation]:
    return [m.conversation for m in parse_file(path).mapped]


def reasons(findings: Any) -> set[str]:
    return {f.reason for f in findings}


def test_qwen3_trains_every_answer_with_its_stop_token_on_fastchat_and_glaive(corpora: Path, tok: Any) -> None:
    qwen3 = renderer(tok, _trl_template("qwen3"))
    convs = convs_of(corpora / "FastChat" / "dummy_conversation.json")
    convs += convs_of(corpora / "LLaMA-Factory" / "glaive_toolcall_en_demo.json")
    ms = measure(convs, qwen3)
    answers = sum(1 for c in convs for m in c.messages if m.role == "assistant")
    assert answers == 1957
    # Every answer has its own span (no two merged, none missing), each ending in <|im_end|>.
    assert sum(len(m.spans) for m in ms) == answers
    assert not [
        c.id for c, m in zip(convs, ms, strict=True) if reasons(m.findings) & {"loss_mask_no_stop", "loss_mask_wrong"}
    ]
    # Re-rendered history turns were anchored (Qwen3 strips the empty reasoning block from them).
    assert sum(m.mask_source == "prefix+stop" for m in ms) == 333 + 261
    # A tool-call turn carries loss through its call and stop token.
    glaive = next(c for c in convs if any(m.tool_calls and not m.text for m in c.messages))
    i = next(k for k, m in enumerate(glaive.messages) if m.tool_calls)
    [m] = measure([glaive], qwen3)
    text = qwen3.render(
        to_template_messages(glaive),
        [dict(t) for t in glaive.tools],
        template=qwen3.template_for([dict(t) for t in glaive.tools]),
    )
    toks = qwen3.tokens(text)
    trained = ["".join(text[toks[k][2] : toks[k][3]] for k in range(s, e)) for s, e in m.spans]
    call = next(t for t in trained if glaive.messages[i].tool_calls[0].name in t)
    assert call.startswith("<tool_call>\n{") and call.endswith("</tool_call><|im_end|>\n")


def test_a_mask_that_stops_short_of_the_stop_token_is_flagged(tok: Any) -> None:
    short = CHATML_GENERATION.replace(
        "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{ message['content'] }}{% endgeneration %}{{ '<|im_end|>' }}",
    )
    r = renderer(tok, short)
    [m] = measure([Conversation((Message("user", "Hi"), Message("assistant", "Hello there")))], r)
    assert [(f.reason, f.message) for f in m.findings if f.reason == "loss_mask_no_stop"] == [
        (
            "loss_mask_no_stop",
            "turn 2 (assistant): its loss ends before the end-of-turn marker '<|im_end|>': "
            "the model would not learn to stop",
        )
    ]
    assert [f.severity for f in judge(m, ValidateConfig()) if f.reason == "loss_mask_no_stop"] == ["error"]


def test_llama31_escaped_tool_results_warn_and_do_not_block(corpora: Path, tok: Any) -> None:
    llama = renderer(tok, _trl_template("llama3_1"))
    convs = [c for c in convs_of(corpora / "LLaMA-Factory" / "glaive_toolcall_en_demo.json") if c.tools][:15]
    ms = measure(convs, llama)
    tool_rows = [m for c, m in zip(convs, ms, strict=True) if any(x.role == "tool" for x in c.messages)]
    assert tool_rows and all("template_escapes_content" in reasons(m.findings) for m in tool_rows)
    errors = {f.reason for m in ms for f in judge(m, ValidateConfig()) if f.severity == "error"}
    assert errors <= {"tool_arguments_schema"}  # a real schema slip in the data, nothing from the template
    f = next(f for f in tool_rows[0].findings if f.reason == "template_escapes_content")
    assert f.message.endswith("the template shows its text escaped as a JSON string")


def test_gemma_folds_or_drops_the_system_prompt(corpora: Path, tok: Any) -> None:
    convs = convs_of(corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl")
    with_user = [c for c in convs if c.messages[0].role == "system" and c.messages[1].role == "user"]
    assert len(with_user) == 5
    with_user = [c for c in with_user if len(c.messages[-1].text) < 2000]  # not the 26 kB answer twice over
    keep = measure(with_user, renderer(tok, GEMMA))
    assert all("template_error" in reasons(m.findings) for m in keep)
    for policy in ("fold", "drop"):
        r = renderer(tok, GEMMA, policy)
        ms = measure(with_user, r)
        for c, m in zip(with_user, ms, strict=True):
            assert not {f.reason for f in judge(m, ValidateConfig()) if f.severity == "error"}
            shown = apply_system_policy(c, policy)
            ids = r.tokenizer.apply_chat_template(to_template_messages(shown), return_dict=False)
            assert m.tokens == len(ids)
            # Per-turn counts keep the conversation's own turns: the system turn has none of its own.
            assert len(m.turn_tokens) == len(c.messages) and m.turn_tokens[0] == 0
    folded = apply_system_policy(with_user[0], "fold")
    assert folded.messages[0].content == f"{with_user[0].messages[0].text}\n\n{with_user[0].messages[1].text}"
    assert renderer(tok, GEMMA, "fold").identity.key != renderer(tok, GEMMA).identity.key


def test_finding_indices_count_the_conversations_own_turns_under_fold(tok: Any) -> None:
    c = Conversation((Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "")))
    [m] = measure([c], renderer(tok, GEMMA, "fold"))
    assert ("empty_content", "turn 3 (assistant) is empty") in [(f.reason, f.message) for f in m.findings]


def test_a_template_that_adds_a_default_system_prompt_warns(tok: Any) -> None:
    smol = ChatRenderer(tok)
    bare = Conversation((Message("user", "Hi"), Message("assistant", "Hello")))
    with_sys = Conversation((Message("system", "Be brief."), *bare.messages))
    [a, b] = measure([bare, with_sys], smol)
    [f] = [f for f in a.findings if f.reason == "template_adds_system_prompt"]
    assert f.details == {"system_prompt": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}
    assert "template_adds_system_prompt" not in reasons(b.findings)
    assert [x.severity for x in judge(a, ValidateConfig()) if x.reason == f.reason] == ["warning"]
    # Qwen3 and Llama 3 add none; Llama 3.1 adds its knowledge-cutoff block.
    for name, adds in (("qwen3", ""), ("llama3", ""), ("llama3_1", "Cutting Knowledge Date: December 2023")):
        r = renderer(tok, _trl_template(name))
        assert (
            r.default_system_prompt(r.template_for(None)).startswith(adds)
            if adds
            else not r.default_system_prompt(r.template_for(None))
        )


def test_the_trainer_trains_the_validated_spans_stop_tokens_included(corpora: Path, tok: Any) -> None:
    from trainer.data import IGNORE, render_all, system_policy

    qtok = renderer(tok, _trl_template("qwen3")).tokenizer
    convs = convs_of(corpora / "FastChat" / "dummy_conversation.json")[:20]
    r = ChatRenderer(qtok)
    examples, stats = render_all(qtok, convs, 4096, renderer=r)
    ms = measure(convs, r)
    im_end = qtok.convert_tokens_to_ids("<|im_end|>")
    for ex, m, c in zip(examples, ms, convs, strict=True):
        assert ex.n_trained == m.loss_tokens
        trained_stops = sum(1 for i, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE and i == im_end)
        assert trained_stops == sum(1 for x in c.messages if x.role == "assistant")
    assert stats["dropped_no_target"] == 0
    # The policy comes from the version's manifest unless the config names one.
    assert system_policy("", {"version": {"tokenizer": {"system_prompt": "fold"}}}) == "fold"
    assert system_policy("drop", {"version": {"tokenizer": {"system_prompt": "fold"}}}) == "drop"
    assert system_policy("", {}) == "keep"


def test_tool_calls_without_text_keep_their_loss_under_qwen25_and_qwen3(tok: Any) -> None:
    tools = ({"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},)
    c = Conversation(
        (
            Message("user", "status of a?"),
            Message("assistant", "", tool_calls=(ToolCall("lookup", '{"cluster": "a"}', "c1"),)),
            Message("tool", "cluster a: healthy", tool_call_id="c1"),
            Message("assistant", "It is up."),
        ),
        tools,
    )
    for name in ("qwen2_5", "qwen3"):
        [m] = measure([c], renderer(tok, _trl_template(name)))
        assert len(m.spans) == 2 and not reasons(m.findings) & {"loss_mask_wrong", "loss_mask_no_stop"}, name
