"""Tests for the synthetic QuillDB ticket-triage generator (datasets/tickets, imported as `tickets`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import tickets as T
from tickets import clean, vocab

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "datasets" / "sample"
SAMPLE_FILES = (
    "tickets_openai.jsonl",
    "tickets_sharegpt.json",
    "tickets_alpaca.json",
    "tickets_alpaca.parquet",
    "ground_truth.json",
)


def _template_regex(template: str) -> re.Pattern[str]:
    escaped = re.escape(template)
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+?", escaped), re.IGNORECASE)


def _user_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def _all_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m.get("content") or "" for m in messages)


def _well_formed(messages: list[dict[str, Any]]) -> bool:
    roles = [m["role"] for m in messages]
    return roles == ["system", "user", "assistant"] and bool(messages[-1]["content"].strip())


def _final_answer(messages: list[dict[str, Any]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "assistant")


# -- clean generation ---------------------------------------------------------


def test_generate_clean_is_deterministic() -> None:
    assert T.generate_clean(300, seed=1) == T.generate_clean(300, seed=1)
    assert T.generate_clean(300, seed=1) != T.generate_clean(300, seed=2)


def test_generate_clean_is_varied_and_well_labelled() -> None:
    items = T.generate_clean(5000, seed=0)
    assert len({it["ticket"] for it in items}) / len(items) > 0.95
    assert len({it["id"] for it in items}) == len(items)
    for it in items:
        assert set(it) == {"id", "ticket", "reply", "labels"}
        assert tuple(it["labels"]) == T.LABEL_KEYS
        assert it["labels"]["category"] in T.CATEGORIES
        assert it["labels"]["priority"] in T.PRIORITIES
        assert it["labels"]["product_area"] in T.PRODUCT_AREAS
    for values in (T.CATEGORIES, T.PRIORITIES, T.PRODUCT_AREAS):
        seen = {it["labels"][key] for it in items for key in T.LABEL_KEYS}
        assert set(values) <= seen


def test_same_ticket_text_never_gets_different_labels() -> None:
    labels_by_ticket: dict[str, dict[str, str]] = {}
    for seed in range(4):
        for it in T.generate_clean(2000, seed=seed):
            assert labels_by_ticket.setdefault(it["ticket"], it["labels"]) == it["labels"]


def test_labels_follow_from_ticket_content() -> None:
    cues = [(p, _template_regex(c)) for p, cs in vocab._CUES.items() for c in cs]
    cores = [
        ((area, cat), _template_regex(c))
        for area, by_cat in vocab._CORES.items()
        for cat, cs in by_cat.items()
        for c in cs
    ]
    exact_core_hits = 0
    items = T.generate_clean(1500, seed=3)
    for it in items:
        labels = it["labels"]
        cue_hits = {p for p, rx in cues if rx.search(it["ticket"])}
        assert cue_hits == {labels["priority"]}, it["ticket"]
        core_hits = {key for key, rx in cores if rx.search(it["ticket"])}
        # Typos may hide the core sentence, but never point at another one.
        assert core_hits <= {(labels["product_area"], labels["category"])}, it["ticket"]
        exact_core_hits += bool(core_hits)
    assert exact_core_hits / len(items) > 0.7


def test_assistant_text_ends_with_compact_label_json() -> None:
    for it in T.generate_clean(50, seed=5):
        text = T.assistant_text(it)
        reply, last = text.rsplit("\n", 1)
        assert reply == it["reply"]
        assert last == json.dumps(it["labels"], separators=(",", ":"))
        assert T.parse_labels(text) == it["labels"]
    assert T.parse_labels("no json here") is None
    assert T.parse_labels('ok\n{"category": "bug"}') is None


# -- dialects ------------------------------------------------------------------


@pytest.mark.parametrize("system", [True, False])
def test_dialect_shapes(system: bool) -> None:
    item = T.generate_clean(1, seed=9)[0]
    answer = T.assistant_text(item)

    openai = T.ticket_row(item, "openai", system=system)
    roles = [m["role"] for m in openai["messages"]]
    assert roles == (["system"] if system else []) + ["user", "assistant"]
    assert openai["messages"][-2]["content"] == item["ticket"]
    assert openai["messages"][-1]["content"] == answer

    sharegpt = T.ticket_row(item, "sharegpt", system=system)
    turns = sharegpt["conversations"]
    assert [t["from"] for t in turns] == (["system"] if system else []) + ["human", "gpt"]
    assert turns[-1]["value"] == answer

    alpaca = T.ticket_row(item, "alpaca", system=system)
    assert set(alpaca) == {"instruction", "input", "output"} | ({"system"} if system else set())
    assert alpaca["instruction"] == T.ALPACA_INSTRUCTION
    assert T.SYSTEM_PROMPT not in alpaca["instruction"]
    assert (alpaca["input"], alpaca["output"]) == (item["ticket"], answer)

    with pytest.raises(ValueError):
        T.ticket_row(item, "chatml")


@pytest.mark.parametrize("dialect", T.DIALECTS)
@pytest.mark.parametrize("system", [True, False])
def test_fast_path_matches_generic_renderer(dialect: str, system: bool) -> None:
    # The sample set renders through _render; benchmarks use ticket_row's fast path.
    for item in T.generate_clean(20, seed=8):
        turns = clean._turns(item["ticket"], T.assistant_text(item), system)
        assert clean._render(turns, dialect) == T.ticket_row(item, dialect, system=system)


@pytest.mark.parametrize("dialect", T.DIALECTS)
def test_generate_conversations_matches_clean(dialect: str) -> None:
    rows = list(T.generate_conversations(200, seed=4, dialect=dialect))
    assert rows == [T.ticket_row(it, dialect) for it in T.generate_clean(200, seed=4)]


# -- noisy pool ------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return T.generate_noisy(2000, seed=11)


def test_noisy_pool_is_deterministic() -> None:
    assert T.generate_noisy(400, seed=3) == T.generate_noisy(400, seed=3)


def test_noisy_rates_match_requested(noisy: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    rows, truth = noisy
    assert len(rows) == 2000
    assert len({r["metadata"]["sample_id"] for r in rows}) == len(rows)
    rows_with_problem = [p["row"] for p in truth["problems"]]
    assert len(rows_with_problem) == len(set(rows_with_problem)), "one problem per row"
    for kind, rate in T.DEFAULT_RATES.items():
        assert abs(len(truth["by_kind"][kind]) / len(rows) - rate) <= 0.005, kind


def test_noisy_custom_rates() -> None:
    rates = {"pii": 0.2, "wrong_label": 0.0, "overlong": 0.02}
    rows, truth = T.generate_noisy(1000, seed=2, rates=rates)
    for kind in T.NOISE_KINDS:
        expected = rates.get(kind, T.DEFAULT_RATES[kind])
        assert abs(len(truth["by_kind"][kind]) / len(rows) - expected) <= 0.005, kind
    with pytest.raises(ValueError):
        T.generate_noisy(100, rates={"typos": 0.1})
    with pytest.raises(ValueError):
        T.generate_noisy(100, rates={"pii": 0.9, "wrong_label": 0.5})


def test_noisy_ground_truth_is_accurate(noisy: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    rows, truth = noisy
    msgs = [r["messages"] for r in rows]
    problem_at = {p["row"]: p for p in truth["problems"]}
    for row, problem in problem_at.items():
        kind = problem["kind"]
        if kind == "exact_duplicate":
            assert problem["duplicate_of"] < row
            assert msgs[row] == msgs[problem["duplicate_of"]]
        elif kind == "near_duplicate":
            source = msgs[problem["source"]]
            score = T.word_shingle_jaccard(_user_text(msgs[row]), _user_text(source))
            assert score >= T.NEAR_DUP_MIN_JACCARD
            assert score == pytest.approx(problem["jaccard"], abs=1e-4)
            assert _user_text(msgs[row]) != _user_text(source)
            given = T.parse_labels(_final_answer(msgs[row]))
            if problem["conflicting_labels"]:
                assert given == problem["given_labels"] != problem["true_labels"]
                assert T.parse_labels(_final_answer(source)) == problem["true_labels"]
            else:
                assert given == T.parse_labels(_final_answer(source))
        elif kind == "wrong_label":
            given = T.parse_labels(_final_answer(msgs[row]))
            assert given == problem["given_labels"] != problem["true_labels"]
            assert given[problem["field"]] != problem["true_labels"][problem["field"]]
        elif kind == "broken_structure":
            assert not _well_formed(msgs[row]), problem
        elif kind == "overlong":
            assert len(_all_text(msgs[row])) > T.OVERLONG_MIN_CHARS
    for row, messages in enumerate(msgs):
        if problem_at.get(row, {}).get("kind") != "broken_structure":
            assert _well_formed(messages), row
        if problem_at.get(row, {}).get("kind") != "overlong":
            assert len(_all_text(messages)) < 4000, row


def test_planted_pii_is_in_its_row_and_nowhere_else(noisy: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    rows, truth = noisy
    pii_rows = set(truth["by_kind"]["pii"])
    listed: set[str] = set()
    for problem in truth["problems"]:
        if problem["kind"] == "pii":
            assert problem["strings"] and len(problem["strings"]) == len(problem["types"])
            for text in problem["strings"]:
                assert text in _user_text(rows[problem["row"]]["messages"])
            listed.update(problem["strings"])
    assert listed == set(truth["pii_strings"])
    email = re.compile(r"@example\.(?:com|org|net)")
    for row, record in enumerate(rows):
        if email.search(_all_text(record["messages"])):
            assert row in pii_rows


def test_gold_eval_only_reaches_pool_through_recorded_leaks(
    noisy: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    rows, truth = noisy
    gold = truth["gold_eval"]
    assert len(gold) == 200
    gold_tickets = {it["ticket"]: i for i, it in enumerate(gold)}
    leaks = {p["row"]: p for p in truth["problems"] if p["kind"] == "eval_leakage"}
    assert any(p["exact"] for p in leaks.values()) and not all(p["exact"] for p in leaks.values())
    for row, record in enumerate(rows):
        text = _user_text(record["messages"])
        if text in gold_tickets:
            assert row in leaks and leaks[row]["exact"], row
            assert leaks[row]["gold_index"] == gold_tickets[text]
    for row, leak in leaks.items():
        source = gold[leak["gold_index"]]
        assert leak["gold_id"] == source["id"]
        score = T.word_shingle_jaccard(_user_text(rows[row]["messages"]), source["ticket"])
        assert score >= T.NEAR_DUP_MIN_JACCARD


# -- bundled sample set --------------------------------------------------------


def _read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    pq = pytest.importorskip("pyarrow.parquet")
    return pq.read_table(path).to_pylist()


def test_sample_files_match_generator(tmp_path: Path) -> None:
    summary = T.write_sample_set(tmp_path, seed=7)
    assert summary["total_bytes"] < 600_000
    for name in SAMPLE_FILES:
        bundled, fresh = SAMPLE_DIR / name, tmp_path / name
        assert bundled.exists(), f"{bundled} missing: run python datasets/generate.py"
        if name.endswith(".parquet"):
            assert _read_parquet_rows(bundled) == _read_parquet_rows(fresh)
        else:
            assert bundled.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), name


def _load_sample_rows() -> dict[str, list[Any]]:
    lines = (SAMPLE_DIR / "tickets_openai.jsonl").read_text(encoding="utf-8").splitlines()
    return {
        "tickets_openai.jsonl": lines,
        "tickets_sharegpt.json": json.loads((SAMPLE_DIR / "tickets_sharegpt.json").read_text("utf-8")),
        "tickets_alpaca.json": json.loads((SAMPLE_DIR / "tickets_alpaca.json").read_text("utf-8")),
        "tickets_alpaca.parquet": _read_parquet_rows(SAMPLE_DIR / "tickets_alpaca.parquet"),
    }


def _at(files: Mapping[str, list[Any]], loc: Mapping[str, Any]) -> Any:
    """The row a ground-truth location points at, as a list of turns."""
    if "line" in loc:
        record = json.loads(files[loc["file"]][loc["line"] - 1])
        return record["messages"]
    record = files[loc["file"]][loc["index"]]
    if "conversations" in record:
        roles = {"system": "system", "human": "user", "gpt": "assistant"}
        return [{"role": roles[t["from"]], "content": t["value"]} for t in record["conversations"]]
    return [{"role": "user", "content": record["input"]}, {"role": "assistant", "content": record["output"]}]


def test_sample_ground_truth_is_accurate() -> None:
    files = _load_sample_rows()
    truth = json.loads((SAMPLE_DIR / "ground_truth.json").read_text("utf-8"))
    for name, meta in truth["files"].items():
        assert len(files[name]) == meta["rows"]
    assert [len(files[n]) for n in SAMPLE_FILES[:4]] == [150, 120, 100, 50]

    malformed = [p for p in truth["problems"] if p["kind"] == "malformed_json"]
    assert [p["line"] for p in malformed] == [75]
    for number, line in enumerate(files["tickets_openai.jsonl"], start=1):
        if number == 75:
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
        else:
            assert "messages" in json.loads(line)

    kinds = {p["kind"] for p in truth["problems"]}
    assert {"exact_duplicate", "near_duplicate", "pii", "broken_structure", "overlong"} <= kinds
    subkinds = {p.get("subkind") for p in truth["problems"]}
    assert set(T.BROKEN_SUBKINDS) <= subkinds
    overlong = [p for p in truth["problems"] if p["kind"] == "overlong"]
    assert len(overlong) == 2
    cross = [p for p in truth["problems"] if p.get("cross_dialect")]
    assert len(cross) == 1

    pii_seen: list[str] = []
    for problem in truth["problems"]:
        if problem["kind"] == "malformed_json":
            continue
        turns = _at(files, problem)
        if problem["kind"] == "exact_duplicate":
            original = _at(files, problem["duplicate_of"])
            strip = [t for t in original if t["role"] != "system"]
            assert [t for t in turns if t["role"] != "system"] == strip
        elif problem["kind"] == "near_duplicate":
            source = _at(files, problem["source"])
            score = T.word_shingle_jaccard(_user_text(turns), _user_text(source))
            assert score >= T.NEAR_DUP_MIN_JACCARD
        elif problem["kind"] == "pii":
            for text in problem["strings"]:
                assert text in _user_text(turns)
            pii_seen += problem["strings"]
        elif problem["kind"] == "overlong":
            assert len(_all_text(turns)) > 10_000
        elif problem["kind"] == "broken_structure":
            roles = [t["role"] for t in turns if t["role"] != "system"]
            assert roles != ["user", "assistant"] or not turns[-1]["content"]
    assert set(pii_seen) == set(truth["pii_strings"])

    tool_lines = [loc["line"] for loc in truth["tool_call_rows"]]
    assert len(tool_lines) == 2
    for number in tool_lines:
        record = json.loads(files["tickets_openai.jsonl"][number - 1])
        assert record["tools"][0]["function"]["name"] == "lookup_cluster"
        call_turn, tool_turn, final = record["messages"][2:]
        assert call_turn["content"] is None
        call = call_turn["tool_calls"][0]
        assert json.loads(call["function"]["arguments"])["cluster"] in record["messages"][1]["content"]
        assert tool_turn == {"role": "tool", "tool_call_id": call["id"], "content": tool_turn["content"]}
        assert T.parse_labels(final["content"]) is not None


# -- realistic (systematic) noise ----------------------------------------------


def test_realistic_noise_is_recorded_and_leaves_every_other_row_as_it_was() -> None:
    """Beside the random noise: one category pair confused on whole product areas, one annotator who
    raises priority in their queue, one macro answer pasted on many tickets. The same seed without
    `realistic` gives the same pool except those rows (and the annotator field), so the recorded
    true labels are checked against what the row would have been."""
    plain_rows, plain = T.generate_noisy(1200, seed=5)
    rows, truth = T.generate_noisy(1200, seed=5, realistic=True)
    assert rows == T.generate_noisy(1200, seed=5, realistic=True)[0]
    assert all("annotator" not in r["metadata"] for r in plain_rows)
    cfg = truth["realistic"]
    realistic = {p["row"]: p for p in truth["problems"] if p["kind"] in T.REALISTIC_KINDS}
    assert {k: truth["counts"][k] for k in T.REALISTIC_KINDS} == {
        k: len(truth["by_kind"][k]) for k in T.REALISTIC_KINDS
    }
    assert [p for p in truth["problems"] if p["kind"] not in T.REALISTIC_KINDS] == plain["problems"]
    for i, (row, before) in enumerate(zip(rows, plain_rows, strict=True)):
        if i not in realistic:
            assert row["messages"] == before["messages"], i
            continue
        p = realistic[i]
        answer = _final_answer(row["messages"])
        assert T.parse_labels(answer) == p["given_labels"]
        assert T.parse_labels(_final_answer(before["messages"])) == p["true_labels"]
        assert p["fields"] == [k for k in T.LABEL_KEYS if p["given_labels"][k] != p["true_labels"][k]]
        assert _user_text(row["messages"]) == _user_text(before["messages"])
        if p["kind"] == "templated_answer":
            assert answer == f"{T.TEMPLATED_REPLY}\n{T.labels_json(cfg['templated_labels'])}"
        elif p["kind"] == "label_confusion":
            assert (p["true_labels"]["category"], p["given_labels"]["category"]) == tuple(cfg["confusion"])
            assert p["fields"] == ["category"]
        else:
            assert row["metadata"]["annotator"] == p["annotator"] == f"a{cfg['annotators']}"
            levels = T.PRIORITIES
            assert levels.index(p["given_labels"]["priority"]) == levels.index(p["true_labels"]["priority"]) + 1
    # Systematic, not random: the confused share of the pair's rows is the rate, in whole product areas
    # but the last; the biased annotator works mostly one queue; the macro goes to one category first.
    a = cfg["confusion"][0]
    confused = [p for p in realistic.values() if p["kind"] == "label_confusion"]
    pair_rows = [r for r in plain_rows if (T.parse_labels(_final_answer(r["messages"])) or {}).get("category") == a]
    assert 0.2 <= len(confused) / len(pair_rows) <= 0.3
    areas = {p["true_labels"]["product_area"] for p in confused}
    assert len(areas) < len(T.PRODUCT_AREAS)
    biased = [p for p in realistic.values() if p["kind"] == "biased_annotator"]
    in_queue = sum(p["true_labels"]["product_area"] == cfg["biased_queue"] for p in biased)
    assert in_queue / len(biased) > 0.3  # ~0.39 expected; one area of seven (~0.14) if it were random
    spam = [p for p in realistic.values() if p["kind"] == "templated_answer"]
    assert len(spam) == round(cfg["templated_rate"] * len(rows))
    assert all(p["true_labels"]["category"] == cfg["templated_category"] for p in spam)
    with pytest.raises(ValueError, match="unknown realistic-noise setting"):
        T.generate_noisy(100, realistic={"typo_rate": 0.1})
    with pytest.raises(ValueError, match="confusion must be two different categories"):
        T.generate_noisy(100, realistic={"confusion": ("bug", "bug")})
