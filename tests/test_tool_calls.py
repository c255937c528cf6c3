"""Tool-call evaluation: parsing calls out of generated text, scoring them against the reference
calls (name exact, arguments JSON-equal, per argument), and the eval items built from the
tool-call turns of real glaive rows."""

from __future__ import annotations

import json
from pathlib import Path

from curation.formats import parse_file
from trainer.data import tool_call_prompts
from trainer.evaluate import summarize_tool_calls
from trainer.metrics import parse_tool_calls, tool_call_scores

REF = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]


def test_calls_are_parsed_from_qwen_llama_and_openai_shapes() -> None:
    qwen = (
        'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
    )
    llama = '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "celsius"}}'
    openai = (
        '{"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\", \\"unit\\": \\"celsius\\"}"}}'
    )
    for text in (qwen, llama, openai):
        assert parse_tool_calls(text) == REF, text
    assert parse_tool_calls("no call {broken json") == []
    assert parse_tool_calls('{"city": "Paris"}') == []  # an object that names no function


def test_scores_name_arguments_and_each_argument() -> None:
    right = '<tool_call>{"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}</tool_call>'
    assert tool_call_scores(right, REF) == {
        "tool_call_valid": 1.0,
        "tool_name_accuracy": 1.0,
        "tool_args_exact": 1.0,
        "tool_arg_accuracy": 1.0,
    }
    half = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "fahrenheit"}}'
    assert tool_call_scores(half, REF) == {
        "tool_call_valid": 1.0,
        "tool_name_accuracy": 1.0,
        "tool_args_exact": 0.0,
        "tool_arg_accuracy": 0.5,
    }
    wrong_name = '{"name": "get_forecast", "arguments": {"city": "Paris", "unit": "celsius"}}'
    assert tool_call_scores(wrong_name, REF)["tool_name_accuracy"] == 0.0
    assert tool_call_scores(wrong_name, REF)["tool_args_exact"] == 0.0
    assert tool_call_scores("It is sunny in Paris.", REF) == {
        "tool_call_valid": 0.0,
        "tool_name_accuracy": 0.0,
        "tool_args_exact": 0.0,
        "tool_arg_accuracy": 0.0,
    }


def test_glaive_tool_call_turns_become_eval_items(corpora: Path) -> None:
    convs = [m.conversation for m in parse_file(corpora / "LLaMA-Factory" / "glaive_toolcall_en_demo.json").mapped]
    prompts = tool_call_prompts(convs[:40])
    turns = sum(1 for c in convs[:40] for m in c.messages if m.role == "assistant" and m.tool_calls)
    assert len(prompts) == turns > 0
    p = prompts[0]
    assert p.messages[-1]["role"] == "user" and p.tools
    assert p.calls and isinstance(p.calls[0]["arguments"], dict) and p.calls[0]["name"]
    # A perfect answer scores 1 everywhere; an empty one 0; the aggregate counts items.
    perfect = [
        "\n".join(json.dumps({"name": c["name"], "arguments": c["arguments"]}) for c in q.calls) for q in prompts
    ]
    metrics, rows = summarize_tool_calls(prompts, ["" for _ in prompts], perfect)
    assert metrics["n"] == len(prompts) == len(rows)
    assert metrics["tuned"]["tool_name_accuracy"] == metrics["tuned"]["tool_args_exact"] == 1.0
    assert metrics["base"]["tool_call_valid"] == metrics["base"]["tool_arg_accuracy"] == 0.0
