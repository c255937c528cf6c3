"""The bundled sample set under datasets/sample and its ground_truth.json."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from .clean import _iter_items, _render, assistant_text, ticket_row
from .noise import _inject
from .phrases import _CLUSTER_RE, _REGIONS
from .vocab import SYSTEM_PROMPT

# --------------------------------------------------------------------------
# Bundled sample set
# --------------------------------------------------------------------------

_MALFORMED_LINE = 75  # 1-based line of tickets_openai.jsonl that is cut short


def _tool_turns(item: Mapping[str, Any], call_id: str, rng: random.Random) -> list[dict[str, Any]]:
    """A tool-using conversation: call lookup_cluster, read the result, answer."""
    match = _CLUSTER_RE.search(item["ticket"])
    if match is None:
        raise ValueError("tool-call rows need a ticket that names a cluster")
    cluster = match.group(0)
    result = {
        "cluster": cluster,
        "status": rng.choice(("healthy", "degraded")),
        "region": rng.choice(_REGIONS),
        "version": f"{rng.choice((23, 24))}.{rng.randint(1, 4)}.{rng.randint(0, 9)}",
        "nodes": rng.randint(3, 12),
    }
    call = {
        "id": call_id,
        "type": "function",
        "function": {
            "name": "lookup_cluster",
            "arguments": json.dumps({"cluster": cluster}),
        },
    }
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": item["ticket"]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
        {"role": "assistant", "content": assistant_text(item)},
    ]


def _locate(file: str, row: int) -> dict[str, Any]:
    """Where a row lives: 1-based ``line`` for JSONL, 0-based ``index`` else."""
    if file.endswith(".jsonl"):
        return {"file": file, "line": row + 1 + (row + 1 >= _MALFORMED_LINE)}
    return {"file": file, "index": row}


def _file_problems(file: str, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for problem in problems:
        located = _locate(file, problem["row"])
        for key in ("duplicate_of", "source"):
            if isinstance(problem.get(key), int):
                problem[key] = _locate(file, problem[key])
        located.update((k, v) for k, v in problem.items() if k != "row")
        out.append(located)
    return out


def _clean_rows(problems: Sequence[Mapping[str, Any]], n_rows: int) -> list[int]:
    dirty = {p["row"] for p in problems}
    return [i for i in range(n_rows) if i not in dirty]


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write_sample_set(out_dir: Path, seed: int = 7) -> dict[str, Any]:
    """Write the bundled sample set and its ``ground_truth.json`` to ``out_dir``.

    Files: ``tickets_openai.jsonl`` (150 lines, line 75 malformed, two
    tool-call rows), ``tickets_sharegpt.json`` (120), ``tickets_alpaca.json``
    (100) and ``tickets_alpaca.parquet`` (50). Returns a summary with row
    counts, byte sizes and problem counts per kind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"sample:{seed}")
    # One unique stream for all files, so the only cross-file duplicates are
    # the planted ones.
    stream = _iter_items(random.Random(seed), f"s{seed}")

    # -- tickets_openai.jsonl -------------------------------------------------
    tool_items: list[dict[str, Any]] = []
    while len(tool_items) < 2:
        item = next(stream)
        if _CLUSTER_RE.search(item["ticket"]):
            tool_items.append(item)
    tool_extra = [
        (_tool_turns(item, f"call_{rng.getrandbits(40):010x}", rng), {"kind": "tool_call"}) for item in tool_items
    ]
    openai_counts = {
        "exact_duplicate": 4,
        "near_duplicate": 3,
        "pii": 4,
        "assistant_first": 2,
        "double_user": 2,
        "empty_answer": 2,
        "overlong": 1,
        "wrong_label": 2,
    }
    base = list(islice(stream, 149 - 2 - 7))
    openai_turns, found = _inject(base, openai_counts, rng, extra=tool_extra)
    tool_rows = [p["row"] for p in found if p["kind"] == "tool_call"]
    openai_problems = [p for p in found if p["kind"] != "tool_call"]
    openai_clean = [i for i in _clean_rows(found, len(openai_turns)) if i not in tool_rows]
    lines = [json.dumps(_render(turns, "openai"), ensure_ascii=False) for turns in openai_turns]
    broken = json.dumps(ticket_row(next(stream), "openai"), ensure_ascii=False)
    lines.insert(_MALFORMED_LINE - 1, broken[: len(broken) * 3 // 5])

    # -- tickets_sharegpt.json -------------------------------------------------
    origin = rng.choice(openai_clean)
    cross = {
        "kind": "exact_duplicate",
        "duplicate_of": _locate("tickets_openai.jsonl", origin),
        "cross_file": True,
        "cross_dialect": True,
    }
    sharegpt_counts = {
        "exact_duplicate": 3,
        "near_duplicate": 3,
        "pii": 3,
        "assistant_first": 1,
        "double_user": 1,
        "empty_answer": 2,
        "overlong": 1,
    }
    base = list(islice(stream, 120 - 1 - 6))
    sharegpt_turns, sharegpt_problems = _inject(base, sharegpt_counts, rng, extra=[(openai_turns[origin], cross)])
    sharegpt_rows = [_render(turns, "sharegpt") for turns in sharegpt_turns]

    # -- tickets_alpaca.json and tickets_alpaca.parquet --------------------------
    alpaca_counts = {
        "exact_duplicate": 3,
        "near_duplicate": 2,
        "pii": 2,
        "empty_answer": 2,
        "wrong_label": 1,
    }
    base = list(islice(stream, 100 - 5))
    alpaca_turns, alpaca_problems = _inject(base, alpaca_counts, rng, system=False)
    alpaca_rows = [_render(turns, "alpaca") for turns in alpaca_turns]

    origin = rng.choice(_clean_rows(alpaca_problems, len(alpaca_turns)))
    cross = {
        "kind": "exact_duplicate",
        "duplicate_of": _locate("tickets_alpaca.json", origin),
        "cross_file": True,
        "cross_dialect": False,
    }
    parquet_counts = {
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "pii": 1,
        "empty_answer": 1,
    }
    base = list(islice(stream, 50 - 1 - 2))
    parquet_turns, parquet_problems = _inject(
        base, parquet_counts, rng, system=False, extra=[(alpaca_turns[origin], cross)]
    )
    parquet_rows = [_render(turns, "alpaca") for turns in parquet_turns]

    # -- write -----------------------------------------------------------------
    files = {
        "tickets_openai.jsonl": ("openai", "jsonl", len(lines)),
        "tickets_sharegpt.json": ("sharegpt", "json", len(sharegpt_rows)),
        "tickets_alpaca.json": ("alpaca", "json", len(alpaca_rows)),
        "tickets_alpaca.parquet": ("alpaca", "parquet", len(parquet_rows)),
    }
    (out_dir / "tickets_openai.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "tickets_sharegpt.json").write_text(_dump_json(sharegpt_rows), encoding="utf-8")
    (out_dir / "tickets_alpaca.json").write_text(_dump_json(alpaca_rows), encoding="utf-8")
    _write_parquet(out_dir / "tickets_alpaca.parquet", parquet_rows)

    problems: list[dict[str, Any]] = [
        {"file": "tickets_openai.jsonl", "line": _MALFORMED_LINE, "kind": "malformed_json"}
    ]
    problems += _file_problems("tickets_openai.jsonl", openai_problems)
    problems += _file_problems("tickets_sharegpt.json", sharegpt_problems)
    problems += _file_problems("tickets_alpaca.json", alpaca_problems)
    problems += _file_problems("tickets_alpaca.parquet", parquet_problems)
    pii_strings = [s for p in problems for s in p.get("strings", ())]
    counts: dict[str, int] = {}
    for problem in problems:
        kind = problem["kind"]
        if kind == "broken_structure":
            kind = f"broken_structure:{problem['subkind']}"
        counts[kind] = counts.get(kind, 0) + 1
    counts = dict(sorted(counts.items()))

    ground_truth: dict[str, Any] = {
        "seed": seed,
        "files": {
            name: {
                "dialect": dialect,
                "format": fmt,
                "rows": rows,
                "position": "line (1-based)" if fmt == "jsonl" else "index (0-based)",
            }
            for name, (dialect, fmt, rows) in files.items()
        },
        "problems": problems,
        "counts": counts,
        "pii_strings": list(dict.fromkeys(pii_strings)),
        "tool_call_rows": [_locate("tickets_openai.jsonl", r) for r in tool_rows],
    }
    (out_dir / "ground_truth.json").write_text(_dump_json(ground_truth), "utf-8")

    sizes = {name: (out_dir / name).stat().st_size for name in files}
    return {
        "out_dir": str(out_dir),
        "files": {name: {"rows": files[name][2], "bytes": sizes[name]} for name in files},
        "total_bytes": sum(sizes.values()) + (out_dir / "ground_truth.json").stat().st_size,
        "problem_counts": counts,
        "pii_strings": len(ground_truth["pii_strings"]),
    }


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
