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
    assert 'input joined to instruction with "\\n"' in pf.mapped[0].mapping
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


# ---------------------------------------------------------------- encodings and odd text (issue 16)

GOOD = {"messages": [{"role": "user", "content": "héllo 😀"}, {"role": "assistant", "content": "ok"}]}
LONE = '{"messages": [{"role": "user", "content": "\\ud800 lone"}, {"role": "assistant", "content": "x"}]}'


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (LONE, "messages[0].content"),
        (
            '{"conversations": [{"from": "human", "value": "a\\udfff"}, {"from": "gpt", "value": "b"}]}',
            "conversations[0].value",
        ),
        ('{"instruction": "i", "output": "o", "meta": {"tags": ["\\udc00"]}}', "meta.tags[0]"),
    ],
)
def test_lone_surrogate_quarantines_only_its_row(tmp_path: Path, row: str, field: str) -> None:
    good = {
        "openai": json.dumps(GOOD),
        "sharegpt": json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}),
        "alpaca": json.dumps({"instruction": "i", "output": "o"}),
    }
    fmt = "openai" if "messages" in row else "sharegpt" if "conversations" in row else "alpaca"
    for suffix, text in ((".jsonl", f"{good[fmt]}\n{row}\n"), (".json", f"[{good[fmt]},\n{row}]")):
        pf = parse_file(write(tmp_path / f"s{suffix}", text))
        assert len(pf.mapped) == 1, suffix
        [q] = pf.quarantined
        assert (q.line, q.field) == (2, field)
        assert q.message.startswith("lone UTF-16 surrogate escape")
        q.raw.encode("utf-8")  # storable
    # A proper surrogate pair is a character, not an error.
    pair = parse_file(write(tmp_path / "p.jsonl", '{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'))
    assert pair.mapped[0].conversation.messages[0].content == "😀" and not pair.quarantined


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("bom", [True, False])
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_utf16_utf32_files_import(tmp_path: Path, encoding: str, bom: bool, suffix: str) -> None:
    rows = [GOOD, {"messages": "bad"}, GOOD | {"id": 2}]
    text = (
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) if suffix == ".jsonl" else json.dumps(rows, indent=1)
    )
    data = text.encode(encoding)
    if bom:
        data = "\ufeff".encode(encoding) + data
    pf = parse_file(write(tmp_path / f"x{suffix}", data))
    assert pf.encoding == encoding
    assert [m.conversation.messages[0].content for m in pf.mapped] == ["héllo 😀", "héllo 😀"]
    assert [q.field for q in pf.quarantined] == ["messages"]
    if suffix == ".jsonl":
        assert pf.quarantined[0].line == 2


def test_bad_utf16_names_the_encoding_and_utf16_lone_surrogate_is_one_row(tmp_path: Path) -> None:
    body = json.dumps(GOOD).encode("utf-16-le")
    with pytest.raises(FileReadError, match=r"x\.jsonl: looks like UTF-16-LE text but is not valid UTF-16-LE"):
        parse_file(write(tmp_path / "x.jsonl", b"\xff\xfe" + body + b"x"))
    lone = '{"messages": [{"role": "user", "content": "a'.encode("utf-16-le") + b"\x00\xd8" + b'"\x00}\x00]\x00}\x00'
    pf = parse_file(write(tmp_path / "y.jsonl", b"\xff\xfe" + body + "\n".encode("utf-16-le") + lone))
    assert len(pf.mapped) == 1 and [(q.line, q.field) for q in pf.quarantined] == [(2, "messages[0].content")]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_cr_only_line_ends(tmp_path: Path, suffix: str) -> None:
    lines = [json.dumps(GOOD), '{"messages": 7}', json.dumps(GOOD | {"id": 3})]
    text = "\r".join(lines) + "\r" if suffix == ".jsonl" else "[\r" + ",\r".join(lines) + "\r]\r"
    pf = parse_file(write(tmp_path / f"cr{suffix}", text.encode()))
    assert (pf.format, len(pf.mapped)) == ("openai", 2)
    assert [(q.line, q.field) for q in pf.quarantined] == [(2 if suffix == ".jsonl" else 3, "messages")]


def test_all_null_conversation_is_quarantined(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": None}]},
        {
            "messages": [
                {"role": "user", "content": ""},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]},
            ]
        },
        {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "ok"}]},
    ]
    pf = parse_file(write(tmp_path / "n.jsonl", "\n".join(json.dumps(r) for r in rows)))
    assert [(q.line, q.field, q.message) for q in pf.quarantined] == [
        (1, "messages", "every turn is empty (content null or '')"),
        (2, "messages", "every turn is empty (content null or '')"),
    ]
    assert len(pf.mapped) == 1


def test_no_readable_row_says_why(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match=r"g\.jsonl: no row could be read \(line 1: invalid JSON"):
        parse_file(write(tmp_path / "g.jsonl", "not json\nnor this\n"))


def test_forced_format_over_a_file_of_no_dialect_stores_nothing(tmp_path: Path) -> None:
    secret = write(tmp_path / "config.jsonl", '{"db_password": "hunter2"}\n{"token": "t"}\n')
    with pytest.raises(FileReadError, match=r"config\.jsonl: no row looks like ShareGPT, OpenAI or Alpaca"):
        parse_file(secret, "openai")
