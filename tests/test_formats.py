"""Dialect mapping, detection and quarantine reasons, on small real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.formats import FileReadError, parse_file
from tests.conftest import write


def quarantine_of(path: Path, fmt: str = "auto") -> list[tuple[int, str, str]]:
    return [(q.line, q.field, q.message) for q in parse_file(path, fmt).quarantined]


def test_sharegpt_roles_tools_and_function_calls(tmp_path: Path) -> None:
    row = {
        "id": "x1",
        "system": "Be brief.",
        "tools": json.dumps([{"name": "lookup", "parameters": {"type": "object"}}]),
        "conversations": [
            {"from": "human", "value": "hi"},
            {"from": "function_call", "value": json.dumps({"name": "lookup", "arguments": {"q": 1}})},
            {"from": "observation", "value": '{"r": 2}'},
            {"from": "gpt", "value": "done"},
        ],
    }
    pf = parse_file(write(tmp_path / "a.json", json.dumps([row])))
    assert pf.format == "sharegpt" and pf.rows == 1 and not pf.quarantined
    m = pf.mapped[0]
    roles = [x.role for x in m.conversation.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    call = m.conversation.messages[2].tool_calls[0]
    assert (call.name, json.loads(call.arguments)) == ("lookup", {"q": 1})
    assert m.conversation.tools[0] == {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object"}},
    }
    assert m.conversation.metadata == {"id": "x1"}
    assert "role 'gpt' → 'assistant'" in m.mapping and "tools parsed from a JSON string" in m.mapping


def test_openai_parts_null_content_and_legacy_function_call(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "value": "b"}]},
                {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
                {"role": "function", "name": "f", "content": "42"},
                {
                    "role": "assistant",
                    "content": [{"type": "reasoning", "value": "think"}, {"type": "text", "value": "ok"}],
                },
            ]
        }
    ]
    pf = parse_file(write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows)))
    c = pf.mapped[0].conversation
    assert c.messages[0].content == "a\nb"
    assert c.messages[1].content is None and c.messages[1].tool_calls[0].name == "f"
    assert c.messages[2].role == "tool"
    assert (c.messages[3].content, c.messages[3].reasoning) == ("ok", "think")
    assert "legacy function_call → tool_calls" in pf.mapped[0].mapping


def test_alpaca_input_history_system(tmp_path: Path) -> None:
    rows = [{"instruction": "Sum", "input": "1 2", "output": "3", "system": "S", "history": [["q", "a"]]}]
    c = parse_file(write(tmp_path / "a.json", json.dumps(rows))).mapped[0].conversation
    assert [(m.role, m.content) for m in c.messages] == [
        ("system", "S"),
        ("user", "q"),
        ("assistant", "a"),
        ("user", "Sum\n\n1 2"),
        ("assistant", "3"),
    ]


def test_alpaca_join_is_configurable(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", json.dumps([{"instruction": "Sum", "input": "1 2", "output": "3"}]))
    pf = parse_file(path, alpaca_join="\n")  # LLaMA-Factory's join
    assert pf.mapped[0].conversation.messages[0].content == "Sum\n1 2"
    assert "input joined to instruction with \"\\n\"" in pf.mapped[0].mapping
    assert parse_file(path).mapped[0].mapping == ("input joined to instruction with a blank line",)


def test_single_object_file(corpora: Path) -> None:
    pf = parse_file(corpora / "axolotl" / "conversation.json")
    assert (pf.format, pf.rows, len(pf.mapped)) == ("sharegpt", 1, 1)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"messages": [{"role": "narrator", "content": "x"}]}', (1, "messages[0].role", "unknown role 'narrator'")),
        ('{"messages": [{"role": 3, "content": "x"}]}', (1, "messages[0].role", "expected a string, got number")),
        ('{"messages": [{"content": "x"}]}', (1, "messages[0].role", "missing field")),
        ('{"messages": "hello"}', (1, "messages", "expected a list of messages, got string")),
        (
            '{"messages": [{"role": "user", "content": 5}]}',
            (1, "messages[0].content", "expected a string, null or a list of parts, got number"),
        ),
        ('{"messages": []}', (1, "messages", "no turns")),
        (
            '{"messages": [{"role": "user", "content": "x"}',
            (1, "(line)", "invalid JSON: Expecting ',' delimiter at column 47"),
        ),
        ("[1, 2]", (1, "(row)", "expected an object, got array")),
        ('{"prompt": "x"}', (1, "messages", "missing field")),
        (
            '{"messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "a", "function": {}}]}]}',
            (1, "messages[0].tool_calls[0].function.name", "missing field"),
        ),
    ],
)
def test_openai_quarantine_reasons(tmp_path: Path, line: str, expected: tuple[int, str, str]) -> None:
    good = '{"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "fine"}]}'
    path = write(tmp_path / "x.jsonl", f"{good}\n{line}\n{good}\n")
    q = quarantine_of(path, "openai")
    assert q == [(2, expected[1], expected[2])]
    assert len(parse_file(path, "openai").mapped) == 2


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"conversations": [{"from": "alien", "value": "x"}]}, "conversations[0].from", "unknown role 'alien'"),
        ({"conversations": [{"from": "human"}]}, "conversations[0].value", "missing field"),
        (
            {"conversations": [{"from": "human", "value": None}]},
            "conversations[0].value",
            "expected a string, got null",
        ),
        (
            {"conversations": [{"from": "function_call", "value": "not json"}]},
            "conversations[0].value",
            "tool call is not valid JSON (Expecting value)",
        ),
        (
            {"conversations": [{"from": "human", "value": "x"}], "tools": "[oops"},
            "tools",
            "tools is a string but not valid JSON (Expecting value)",
        ),
        ({"conversations": {"from": "human"}}, "conversations", "expected a list of turns, got object"),
    ],
)
def test_sharegpt_quarantine_reasons(tmp_path: Path, row: dict, field: str, message: str) -> None:
    good = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    path = write(tmp_path / "s.json", json.dumps([good, row], indent=1))
    pf = parse_file(path, "sharegpt")
    assert [(q.index, q.field, q.message) for q in pf.quarantined] == [(1, field, message)]


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"input": "x", "output": "y"}, "instruction", "missing field"),
        ({"instruction": "x"}, "output", "missing field"),
        ({"instruction": "x", "output": ["a", "b"]}, "output", "expected a string, got array"),
        (
            {"instruction": "x", "output": "y", "history": [["only one"]]},
            "history[0]",
            "expected a [prompt, answer] pair",
        ),
    ],
)
def test_alpaca_quarantine_reasons(tmp_path: Path, row: dict, field: str, message: str) -> None:
    path = write(tmp_path / "a.json", json.dumps([{"instruction": "i", "output": "o"}, row]))
    pf = parse_file(path, "alpaca")
    assert [(q.field, q.message) for q in pf.quarantined] == [(field, message)]


def test_json_array_rows_have_line_numbers(tmp_path: Path) -> None:
    rows = [{"instruction": f"i{i}", "output": "o"} for i in range(3)]
    path = write(tmp_path / "a.json", json.dumps(rows, indent=2))
    assert [m.line for m in parse_file(path).mapped] == [2, 6, 10]


def test_unreadable_files_fail_whole(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match=r"invalid JSON: Expecting ',' delimiter at line 1 column 29"):
        parse_file(write(tmp_path / "bad.json", '[{"instruction": "x", "o": 1'))
    with pytest.raises(FileReadError, match="not UTF-8 text"):
        parse_file(write(tmp_path / "bad2.json", b'[{"a": "\xff"}]'))
    with pytest.raises(FileReadError, match="no such file"):
        parse_file(tmp_path / "missing.jsonl")
    with pytest.raises(FileReadError, match=r"unsupported file type '\.csv'"):
        parse_file(write(tmp_path / "x.csv", "a,b"))
    with pytest.raises(FileReadError, match="cannot tell the format"):
        parse_file(write(tmp_path / "x.json", '[{"a": 1}]'))
    with pytest.raises(FileReadError, match="not a readable Parquet file"):
        parse_file(write(tmp_path / "x.parquet", "nope"))


def test_jsonl_bom_crlf_and_invalid_utf8_line(tmp_path: Path) -> None:
    good = b'{"instruction": "a", "output": "b"}'
    path = write(
        tmp_path / "x.jsonl",
        b"\xef\xbb\xbf" + good + b"\r\n" + b'{"instruction": "\xff"}\r\n' + good.replace(b"a", b"c") + b"\r\n",
    )
    pf = parse_file(path)
    assert len(pf.mapped) == 2
    assert [(q.line, q.field, q.message) for q in pf.quarantined] == [(2, "(line)", "invalid UTF-8 at byte 17")]


def test_parquet_alpaca(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"instruction": ["x", "y"], "input": ["", "z"], "output": ["1", None]}), path)
    pf = parse_file(path)
    assert pf.format == "alpaca" and len(pf.mapped) == 1
    assert [(q.line, q.field, q.message) for q in pf.quarantined] == [(2, "output", "missing field")]


def test_corpora_tool_content_parts(corpora: Path) -> None:
    pf = parse_file(corpora / "LLaMA-Factory" / "reason_tool_use_demo_50.jsonl")
    assert pf.format == "openai" and len(pf.mapped) == 50
    calls = [c for m in pf.mapped for msg in m.conversation.messages for c in msg.tool_calls]
    assert len(calls) == 68
    assert all(json.loads(c.arguments) is not None for c in calls)
    weather = parse_file(corpora / "openai-cheat-sheet" / "weather_chat_fine_tuning.jsonl").mapped[0].conversation
    assert weather.messages[1].tool_calls[0].id == "call_rEJCsN62dJMJXkdnZ4eBexmo"
    assert weather.messages[2].tool_call_id == "call_rEJCsN62dJMJXkdnZ4eBexmo"
