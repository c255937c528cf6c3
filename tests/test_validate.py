"""The validation stage on real files with the real SmolLM2 tokenizer and real chat templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from curation.formats import parse_file
from curation.records import Conversation, Message, ToolCall
from curation.validate import (
    REASONS,
    ChatRenderer,
    Finding,
    ValidateConfig,
    ValidateError,
    check_structure,
    cutoff_preview,
    inspect,
    judge,
    measure,
    to_template_messages,
    validate,
)
from tests.chat_templates import (
    CHATML_GENERATION,
    CHATML_GENERATION_EMPTY,
    CHATML_GENERATION_ON_USER,
    GEMMA,
    QWEN25,
    with_template,
)
from tests.conftest import SAMPLE

CLEAN = [
    "FineTuning/alpaca_200.json",
    "FastChat/dummy_conversation.json",
    "axolotl/conversation.json",
    "LLaMA-Factory/identity.json",
    "LLaMA-Factory/mllm_demo.json",
]


@pytest.fixture(scope="module")
def tok() -> Any:
    from curation.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def smol(tok: Any) -> ChatRenderer:
    return ChatRenderer(tok)


@pytest.fixture(scope="module")
def qwen(tok: Any) -> ChatRenderer:
    return ChatRenderer(with_template(tok, QWEN25))


def convs_of(path: Path) -> list[Conversation]:
    return [m.conversation for m in parse_file(path).mapped]


ADDS_SYSTEM = "template_adds_system_prompt"


def pairs(findings: list[Any]) -> list[tuple[str, str]]:
    """(reason, message) of findings or flags, less the default-system-prompt warning (tested alone)."""
    return [(f.reason, f.message) for f in findings if f.reason != ADDS_SYSTEM]


def reasons(flags: list[Any], severity: str | None = "error") -> set[str]:
    return {f.reason for f in flags if severity is None or f.severity == severity}


def conv(*turns: tuple[str, str], **kw: Any) -> Conversation:
    return Conversation(tuple(Message(r, c) for r, c in turns), **kw)


def baseline_tokens(tokenizer: Any, c: Conversation) -> int | None:
    try:
        ids = tokenizer.apply_chat_template(
            to_template_messages(c), tools=[dict(t) for t in c.tools] or None, tokenize=True, return_dict=False
        )
    except Exception:
        return None
    return len(ids)


# ---------------------------------------------------------------- the corpora


def test_toy_chat_flags_missing_user_and_the_long_answer(corpora: Path, smol: ChatRenderer) -> None:
    convs = convs_of(corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl")
    ms, report = validate(convs, smol)
    by_reason: dict[str, list[int]] = {}
    for i, flags in enumerate(report.flags):
        for f in flags:
            by_reason.setdefault(f.reason, []).append(i)
    # Rows 4, 9 and 10 (1-based) are system + assistant only; row 5 is the 26,000-character answer.
    # Rows 3 and 8 have no system prompt: SmolLM2's template adds its own (a warning).
    assert by_reason == {
        "first_turn_not_user": [3, 8, 9],
        "over_max_seq_len": [4],
        "template_adds_system_prompt": [2, 7],
    }
    no_user = next(f for f in report.flags[3] if f.reason == "first_turn_not_user")
    assert no_user.message == "the conversation has no user turn (roles: system, assistant)"
    assert no_user.severity == "error"
    long = next(f for f in report.flags[4] if f.reason == "over_max_seq_len")
    assert len(convs[4].messages[-1].text) == 26000
    assert ms[4].tokens is not None and ms[4].tokens > 2048
    assert long.details["overflow"] == ms[4].tokens - 2048
    assert long.message == (
        f"{ms[4].tokens} tokens, {ms[4].tokens - 2048} over max_seq_len 2048 "
        "(truncating cuts the last answer midway; dropping trailing turns keeps 0 of 1 answers)"
    )
    assert report.summary["passed"] == 6 and report.summary["over_max_seq_len"] == 1


def test_glaive_zh_flags_its_two_tool_results_without_a_call(corpora: Path, qwen: ChatRenderer) -> None:
    path = corpora / "LLaMA-Factory" / "glaive_toolcall_zh_demo.json"
    parsed = parse_file(path)
    convs = [m.conversation for m in parsed.mapped]
    _ms, report = validate(convs, qwen)
    hits = [
        (parsed.mapped[i].line, f.message)
        for i, flags in enumerate(report.flags)
        for f in flags
        if f.reason == "tool_result_without_call"
    ]
    assert hits == [
        (5819, "turn 3 (tool): it does not follow a tool call (it follows turn 2 (assistant))"),
        (8763, "turn 3 (tool): it does not follow a tool call (it follows turn 2 (assistant))"),
    ]
    # Qwen2.5's template renders tools, calls and results: nothing about the template or the mask.
    assert not {r for fl in report.flags for r in reasons(fl, None)} & {
        "template_error",
        "template_drops_content",
        "template_drops_tools",
        "loss_mask_empty",
        "loss_mask_wrong",
    }


def test_missing_turn_flags_the_empty_answer(corpora: Path, smol: ChatRenderer) -> None:
    _ms, report = validate(convs_of(corpora / "axolotl" / "conversation.missingturns.json"), smol)
    [flags] = report.flags
    assert pairs(flags) == [("empty_content", "turn 2 (assistant) is empty")]
    assert flags[0].details == {"message_index": 1}


@pytest.mark.parametrize("name", CLEAN)
def test_clean_files_pass(corpora: Path, smol: ChatRenderer, name: str) -> None:
    convs = convs_of(corpora / name)
    ms, report = validate(convs, smol)
    # SmolLM2's template adds its own system prompt to rows without one: a warning, never an error.
    no_system = sum(c.messages[0].role != "system" for c in convs)
    assert report.summary["flagged"] == {}
    assert report.summary["warnings"] == ({"template_adds_system_prompt": no_system} if no_system else {})
    assert report.summary["passed"] == len(ms)
    assert all(m.loss_tokens > 0 and m.mask_source == "prefix" for m in ms)


def test_weather_tool_calls_pass_with_a_tool_template_and_fail_with_smollm2(
    corpora: Path, smol: ChatRenderer, qwen: ChatRenderer
) -> None:
    convs = convs_of(corpora / "openai-cheat-sheet" / "weather_chat_fine_tuning.jsonl")[:1]
    _ms, ok = validate(convs, qwen)
    assert pairs(ok.flags[0]) == []
    _ms, bad = validate(convs, smol)
    assert [(f.reason, f.message) for f in bad.flags[0]] == [
        (
            "template_error",
            "the chat template refuses this conversation: 'dict object' has no attribute 'content' "
            "(this template does not know tool calls)",
        )
    ]


def test_bundled_sample_flags_exactly_the_planted_structure_and_length_problems(smol: ChatRenderer) -> None:
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    planted = {
        (p["file"], p.get("line", p.get("index")))
        for p in truth["problems"]
        if p["kind"] in ("broken_structure", "overlong")
    }
    tool_rows = {(t["file"], t["line"]) for t in truth["tool_call_rows"]}
    flagged: set[tuple[str, int]] = set()
    template_refused: set[tuple[str, int]] = set()
    for name, spec in truth["files"].items():
        parsed = parse_file(SAMPLE / name)
        _ms, report = validate([m.conversation for m in parsed.mapped], smol)
        for m, flags in zip(parsed.mapped, report.flags, strict=True):
            key = (name, m.line if spec["position"].startswith("line") else m.index)
            errors = reasons(flags)
            if errors - {"template_error"}:
                flagged.add(key)
            if errors == {"template_error"}:
                template_refused.add(key)
    assert flagged == planted
    # SmolLM2's template cannot render tool calls: those rows are refused, and only those.
    assert template_refused == tool_rows


# ---------------------------------------------------------------- exact token counts


@pytest.mark.parametrize(
    "name",
    [
        "openai-cheat-sheet/toy_chat_fine_tuning.jsonl",
        "LLaMA-Factory/alpaca_zh_demo.json",
        "axolotl/conversation.json",
        "LLaMA-Factory/v1_sft_demo.jsonl",
    ],
)
def test_token_counts_equal_apply_chat_template(corpora: Path, tok: Any, smol: ChatRenderer, name: str) -> None:
    convs = convs_of(corpora / name)[:300]
    ms = measure(convs, smol)
    assert [m.tokens for m in ms] == [baseline_tokens(tok, c) for c in convs]


def test_token_counts_equal_apply_chat_template_with_tools(corpora: Path, qwen: ChatRenderer) -> None:
    convs = convs_of(corpora / "LLaMA-Factory" / "reason_tool_use_demo_50.jsonl")
    ms = measure(convs, qwen)
    assert [m.tokens for m in ms] == [baseline_tokens(qwen.tokenizer, c) for c in convs]


def test_special_tokens_inside_content_are_counted_like_the_tokenizer(tok: Any, smol: ChatRenderer) -> None:
    c = conv(("user", "say <|im_end|> then <|endoftext|>\n\n  spaces "), ("assistant", " ok\n\n\n"))
    [m] = measure([c], smol)
    assert m.tokens == baseline_tokens(tok, c)


# ---------------------------------------------------------------- the loss mask


def test_prefix_mask_matches_rendering_prefixes_token_by_token(corpora: Path, tok: Any, smol: ChatRenderer) -> None:
    convs = convs_of(corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl")[:3]
    for c, m in zip(convs, measure(convs, smol), strict=True):
        msgs = to_template_messages(c)
        want = []
        for i, mm in enumerate(c.messages):
            if mm.role == "assistant":
                start = len(tok.apply_chat_template(msgs[:i], add_generation_prompt=True, return_dict=False))
                end = len(tok.apply_chat_template(msgs[: i + 1], return_dict=False))
                want.append((start, end))
        assert m.spans == want and m.mask_source == "prefix"


def test_generation_mask_equals_return_assistant_tokens_mask(corpora: Path, tok: Any) -> None:
    gtok = with_template(tok, CHATML_GENERATION)
    convs = convs_of(corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl")
    convs += convs_of(corpora / "LLaMA-Factory" / "alpaca_zh_demo.json")[:40]
    ms = measure(convs, ChatRenderer(gtok))
    for c, m in zip(convs, ms, strict=True):
        out = gtok.apply_chat_template(
            to_template_messages(c), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        mine = [0] * len(out["input_ids"])
        for s, e in m.spans:
            mine[s:e] = [1] * (e - s)
        assert mine == out["assistant_masks"] and m.mask_source == "generation"


def test_a_mask_that_covers_nothing_is_flagged(tok: Any) -> None:
    r = ChatRenderer(with_template(tok, CHATML_GENERATION_EMPTY))
    [m] = measure([conv(("user", "Hi"), ("assistant", "Hello there"))], r)
    assert m.loss_tokens == 0
    assert pairs(m.findings) == [
        ("loss_mask_wrong", "turn 2 (assistant): its text carries no loss"),
        ("loss_mask_empty", "no token carries loss: the trainer would learn nothing from this conversation"),
    ]


def test_a_mask_on_the_wrong_turns_is_flagged(tok: Any) -> None:
    r = ChatRenderer(with_template(tok, CHATML_GENERATION_ON_USER))
    [m] = measure([conv(("user", "Hi"), ("assistant", "Hello there"))], r)
    assert pairs(m.findings) == [
        ("loss_mask_wrong", "turn 1 (user): the loss mask covers this user turn"),
        ("loss_mask_wrong", "turn 2 (assistant): its text carries no loss"),
    ]


def test_inspect_highlights_exactly_the_loss_tokens(smol: ChatRenderer) -> None:
    c = conv(("system", "Be brief."), ("user", "<b>hi</b>"), ("assistant", "Hello."))
    d = inspect(c, smol)
    assert "".join(s["text"] for s in d["segments"]) == d["text"]
    assert [s["text"] for s in d["segments"] if s["loss"]] == ["Hello.<|im_end|>\n"]
    assert sum(r["loss"] for r in d["token_rows"]) == d["loss_tokens"] == 4
    assert d["turn_tokens"] and sum(d["turn_tokens"]) == d["tokens"] == len(d["token_rows"])


# ---------------------------------------------------------------- a template that refuses a role


def test_template_that_refuses_the_system_role(tok: Any) -> None:
    gemma = ChatRenderer(with_template(tok, GEMMA))
    with_system = conv(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello"))
    without = conv(("user", "Hi"), ("assistant", "Hello"))
    ms = measure([with_system, without], gemma)
    assert ms[0].tokens is None
    assert [(f.reason, f.message) for f in ms[0].findings] == [
        (
            "template_error",
            "the chat template refuses this conversation: System role not supported "
            "(a template that refuses a system turn validates with the system-prompt policy 'fold')",
        )
    ]
    assert ms[1].findings == [] and ms[1].tokens == baseline_tokens(gemma.tokenizer, without)
    assert gemma.identity.template_sha256 != ChatRenderer(tok).identity.template_sha256


def test_a_tokenizer_without_a_template_is_refused(tok: Any) -> None:
    bare = with_template(tok, "")
    bare.chat_template = None
    with pytest.raises(ValidateError, match="has no chat template"):
        ChatRenderer(bare, name="bare-model")


# ---------------------------------------------------------------- structure checks


def test_structure_checks_and_their_messages() -> None:
    weird = Conversation((Message("user", "a"), Message("robot", "b"), Message("system", "c"), Message("user", " ")))
    assert [(f.reason, f.message) for f in check_structure(weird)] == [
        ("unknown_role", "turn 2 (robot): unknown role 'robot'"),
        ("system_not_first", "turn 3 (system): a system turn after the first turn"),
        ("empty_content", "turn 4 (user) is empty"),
        ("no_final_assistant", "the conversation does not end with an assistant turn (the last turn is from the user)"),
    ]
    double = conv(("user", "a"), ("user", "b"), ("assistant", "c"))
    assert [(f.reason, f.message) for f in check_structure(double)] == [
        ("consecutive_same_role", "turns 1 and 2 are both from the user")
    ]
    first = conv(("system", "s"), ("assistant", "x"), ("user", "y"), ("assistant", "z"))
    assert [f.message for f in check_structure(first)] == [
        "the first turn after the system prompt: turn 2 (assistant) comes first (roles: system, assistant, user, assistant)"
    ]


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"cluster": {"type": "string"}},
            "required": ["cluster"],
        },
    },
}


def tool_conv(*msgs: Message, tools: tuple[dict[str, Any], ...] = (TOOL,)) -> Conversation:
    return Conversation(msgs, tools)


def test_tool_checks_and_their_messages() -> None:
    ok = tool_conv(
        Message("user", "status?"),
        Message("assistant", None, tool_calls=(ToolCall("lookup", '{"cluster": "a"}', "c1"),)),
        Message("tool", "up", tool_call_id="c1"),
        Message("assistant", "It is up."),
    )
    assert check_structure(ok) == []
    # Parallel calls without ids are answered in order by the results that follow.
    parallel = tool_conv(
        Message("user", "both?"),
        Message(
            "assistant",
            None,
            tool_calls=(ToolCall("lookup", '{"cluster": "a"}'), ToolCall("lookup", '{"cluster": "b"}')),
        ),
        Message("tool", "up"),
        Message("tool", "down"),
        Message("assistant", "a is up, b is down."),
    )
    assert check_structure(parallel) == []
    bad = tool_conv(
        Message("user", "status?"),
        Message(
            "assistant",
            None,
            tool_calls=(
                ToolCall("lookup", '{"cluster": 3}', "c1"),
                ToolCall("lookup", "{not json", "c2"),
                ToolCall("reboot", "{}", "c3"),
            ),
        ),
        Message("tool", "up", tool_call_id="c9"),
        Message("assistant", "Done."),
    )
    assert [(f.reason, f.message) for f in check_structure(bad)] == [
        ("tool_arguments_schema", "turn 2 (assistant): call to lookup: 3 is not of type 'string' (at cluster)"),
        (
            "tool_arguments_invalid_json",
            "turn 2 (assistant): call to lookup: arguments are not valid JSON (Expecting property name enclosed in double quotes)",
        ),
        ("tool_not_declared", "turn 2 (assistant): call to reboot: reboot is not declared (declared: lookup)"),
        ("tool_result_without_call", "turn 3 (tool): no tool call has id 'c9'"),
        ("tool_call_without_result", "turn 2 (assistant): the call to lookup (id c1) has no tool result"),
        ("tool_call_without_result", "turn 2 (assistant): the call to lookup (id c2) has no tool result"),
        ("tool_call_without_result", "turn 2 (assistant): the call to reboot (id c3) has no tool result"),
    ]


def test_a_tool_call_the_template_does_not_render_is_flagged(smol: ChatRenderer, qwen: ChatRenderer) -> None:
    c = tool_conv(
        Message("user", "status of a?"),
        Message("assistant", "Let me check.", tool_calls=(ToolCall("lookup", '{"cluster": "a"}', "c1"),)),
        Message("tool", "lookup says: up", tool_call_id="c1"),
        Message("assistant", "It is up."),
    )
    [m] = measure([c], smol)
    assert pairs(m.findings) == [
        ("template_drops_content", "turn 2 (assistant): the template does not render the call to lookup"),
        ("template_drops_tools", "the template does not show the model the declared tools (lookup)"),
    ]
    [m] = measure([c], qwen)
    assert pairs(m.findings) == [] and len(m.spans) == 2


# ---------------------------------------------------------------- config, severities, cutoff


def test_config_overrides_and_errors() -> None:
    cfg = ValidateConfig(severity={"over_max_seq_len": "warning"})
    assert cfg.severity_of("over_max_seq_len") == "warning" and cfg.severity_of("empty_content") == "error"
    assert ValidateConfig().severity_of("template_drops_tools") == "warning"
    assert set(ValidateConfig.help()) == {"model", "max_seq_len", "severity", "batch_size", "system_prompt"}
    assert set(cfg.to_dict()["severity"]) == set(REASONS)
    with pytest.raises(ValidateError) as e:
        ValidateConfig(max_seq_len=0)
    assert str(e.value) == "max_seq_len must be a positive number of tokens, got 0"
    with pytest.raises(ValidateError) as e:
        ValidateConfig(severity={"empty_content": "fatal"})
    assert str(e.value) == "severity of empty_content must be 'error' or 'warning', got 'fatal'"
    with pytest.raises(ValidateError, match="unknown reason 'nope' in severity overrides"):
        ValidateConfig(severity={"nope": "warning"})


def test_a_team_that_truncates_downgrades_the_length_check(corpora: Path, smol: ChatRenderer) -> None:
    convs = convs_of(corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl")[4:5]
    _ms, strict = validate(convs, smol)
    _ms, lenient = validate(convs, smol, ValidateConfig(severity={"over_max_seq_len": "warning"}))
    assert strict.summary["passed"] == 0 and strict.summary["flagged"] == {"over_max_seq_len": 1}
    assert lenient.summary["passed"] == 1 and lenient.summary["warnings"] == {"over_max_seq_len": 1}


def test_cutoff_preview_per_policy(smol: ChatRenderer) -> None:
    long_answer = "word " * 300
    c = conv(
        ("user", "first question"),
        ("assistant", "short answer"),
        ("user", "second question"),
        ("assistant", long_answer),
    )
    [m] = measure([c], smol)
    (first_start, first_end), (last_start, _last_end) = m.spans
    assert m.turn_tokens and sum(m.turn_tokens) == m.tokens
    # A limit inside the last answer: cutting tokens cuts it midway; dropping trailing turns keeps
    # the first answer.
    inside = cutoff_preview([m], last_start + 10)
    assert inside == {
        "drop_row": {"rows": 1, "lose_last_answer": 1, "left_without_answer": 1},
        "drop_trailing_turns": {"rows": 1, "lose_last_answer": 1, "left_without_answer": 0},
        "truncate": {"rows": 1, "lose_last_answer": 1, "cut_mid_answer": 1, "left_without_answer": 0},
    }
    # A limit between the answers: cutting tokens loses the last answer whole.
    between = cutoff_preview([m], first_end + 1)
    assert first_end + 1 < last_start
    assert between["truncate"] == {"rows": 1, "lose_last_answer": 1, "cut_mid_answer": 0, "left_without_answer": 0}
    # A limit before the first answer: nothing is left to learn from, whatever the policy.
    before = cutoff_preview([m], first_start)
    assert before["truncate"]["left_without_answer"] == before["drop_trailing_turns"]["left_without_answer"] == 1
    [flag] = [f for f in judge(m, ValidateConfig(max_seq_len=last_start + 10)) if f.reason != ADDS_SYSTEM]
    assert flag.reason == "over_max_seq_len" and flag.details["cutoff"]["drop_trailing_turns"]["answers_kept"] == 1
    assert flag.message.endswith(
        "(truncating cuts the last answer midway; dropping trailing turns keeps 1 of 2 answers)"
    )


def test_measurement_round_trips_through_json(corpora: Path, smol: ChatRenderer) -> None:
    from curation.validate import Measurement

    for m in measure(convs_of(corpora / "openai-cheat-sheet" / "toy_chat_fine_tuning.jsonl"), smol):
        again = Measurement.from_json(m.to_json())
        assert again == m
        assert all(isinstance(f, Finding) for f in again.findings)


def test_counts_ignore_padding_left_on_by_a_padded_tokenizer_call() -> None:
    """A padded `tokenizer(texts, padding=True)` (the trainer's generation batches) leaves padding on
    in the fast backend the renderer encodes with; token counts must not change because of it."""
    from curation.models import load_tokenizer

    tok = load_tokenizer()  # a renderer of its own: the padding below must not leak into the module's
    renderer = ChatRenderer(tok)
    convs = [
        Conversation((Message("user", "Short."), Message("assistant", "Ok."))),
        Conversation((Message("user", "A much longer question " * 20), Message("assistant", "A longer answer " * 10))),
    ]
    before = [m.tokens for m in measure(convs, renderer)]
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    tok(["a", "a much longer text " * 30], padding=True)
    assert tok.backend_tokenizer.padding is not None  # the leak this guards against
    assert [m.tokens for m in measure(convs, ChatRenderer(tok))] == before
