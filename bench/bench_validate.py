"""Validation speed: Sift's batched validation vs a loop of `apply_chat_template(tokenize=True)`.

The baseline is the seeds' DataValidator style: one `apply_chat_template(tokenize=True)` call per
conversation, counting its tokens. Sift does more per row (structure checks, the loss mask from
prefix renders, per-turn counts) and must still be faster, with the same token count for every row.

    .venv/bin/python bench/run.py bench_validate                 # 20,000 conversations
    SIFT_BENCH_VALIDATE_N=50000 .venv/bin/python bench/run.py bench_validate
    SIFT_BENCH_VALIDATE_BREAKDOWN=1 .venv/bin/python bench/bench_validate.py   # µs per row per part
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from curation.formats import map_openai
from curation.models import load_tokenizer
from curation.validate import ChatRenderer, ValidateConfig, validate

sys.path.append(str(Path(__file__).resolve().parent.parent / "datasets"))  # the sample generator, `tickets`


def baseline(tokenizer: Any, rows: list[dict[str, Any]]) -> list[int]:
    """One `apply_chat_template(tokenize=True)` per conversation."""
    out = []
    for row in rows:
        ids = tokenizer.apply_chat_template(row["messages"], tools=row.get("tools"), tokenize=True, return_dict=False)
        out.append(len(ids))
    return out


def hf_batch(tokenizer: Any, rows: list[dict[str, Any]], chunk: int = 1000) -> list[int]:
    """The strongest tool for the same count: HF's batch call, `apply_chat_template` over a list of
    conversations (templates rendered, then one fast-tokenizer batch encode per chunk)."""
    out: list[int] = []
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        tools = part[0].get("tools")
        same_tools = all(r.get("tools") == tools for r in part)
        if not same_tools:  # the batch call takes one tools list for the whole batch
            out.extend(baseline(tokenizer, part))
            continue
        ids = tokenizer.apply_chat_template(
            [r["messages"] for r in part], tools=tools, tokenize=True, return_dict=False
        )
        out.extend(len(x) for x in ids)
    return out


def rows_for_bench(n: int, seed: int = 1) -> list[dict[str, Any]]:
    from tickets import generate_conversations

    return list(generate_conversations(n, seed=seed))


def breakdown(n: int = 5000) -> dict[str, float]:
    """Microseconds per row of each part of Sift's validation (best of 3), next to the baseline."""
    from curation import validate as v

    rows = rows_for_bench(n)
    convs = [map_openai(r)[0] for r in rows]
    tok = load_tokenizer()
    renderer = ChatRenderer(tok)
    validate(convs[:50], renderer)

    def per_row(f: Any, repeat: int = 3) -> float:
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        return round(best * 1e6 / n, 1)

    msgs = [v.to_template_messages(c) for c in convs]
    texts = [r.text for r in (v._render_one(renderer, c) for c in convs)]
    out = {
        "baseline": per_row(lambda: baseline(tok, rows), 1),
        "sift validate (all)": per_row(lambda: validate(convs, renderer)),
        "render: whole conversation": per_row(lambda: [renderer.render(m, None) for m in msgs]),
        "render: prefix + generation prompt": per_row(
            lambda: [renderer.render(m[:-1], None, add_generation_prompt=True) for m in msgs]
        ),
        "render + checks per row": per_row(lambda: [v._render_one(renderer, c) for c in convs]),
        "tokenize: distinct pieces (Sift)": per_row(lambda: renderer.encode(texts)),  # type: ignore[arg-type]
        "tokenize: whole texts, encode_batch": per_row(
            lambda: renderer._tk.encode_batch(texts, add_special_tokens=False)
        ),
    }
    print("| part | µs per row |")
    print("|---|---|")
    for k, val in out.items():
        print(f"| {k} | {val} |")
    return out


def main() -> dict[str, float]:
    if os.environ.get("SIFT_BENCH_VALIDATE_BREAKDOWN"):
        return breakdown()
    n = int(os.environ.get("SIFT_BENCH_VALIDATE_N", "20000"))
    rows = rows_for_bench(n)
    convs = [map_openai(r)[0] for r in rows]
    tok = load_tokenizer()

    t = time.perf_counter()
    base_counts = baseline(tok, rows)
    base_s = time.perf_counter() - t

    t = time.perf_counter()
    batch_counts = hf_batch(tok, rows)
    batch_s = time.perf_counter() - t
    assert batch_counts == base_counts

    t = time.perf_counter()
    renderer = ChatRenderer(tok)  # compiles the template, hashes the tokenizer (part of the cost)
    ms, report = validate(convs, renderer, ValidateConfig())
    sift_s = time.perf_counter() - t

    ours = [m.tokens for m in ms]
    mismatches = sum(a != b for a, b in zip(base_counts, ours, strict=True))
    assert mismatches == 0, f"{mismatches} rows with different token counts"
    ratio = base_s / sift_s
    print(
        f"machine: {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
        f"model: embedded SmolLM2-135M-Instruct tokenizer + ChatML template"
    )
    print("| validation | conversations | seconds | conversations/s |")
    print("|---|---|---|---|")
    print(f"| baseline: `apply_chat_template(tokenize=True)` per row | {n:,} | {base_s:.2f} | {n / base_s:,.0f} |")
    print(
        f"| HF batch: `apply_chat_template([...], tokenize=True)` per 1,000 rows | {n:,} | {batch_s:.2f} | "
        f"{n / batch_s:,.0f} |"
    )
    print(
        f"| Sift `validate` (structure, render, loss mask, batch tokenize, cutoff preview) | {n:,} | "
        f"{sift_s:.2f} | {n / sift_s:,.0f} |"
    )
    print(
        f"\nSift takes **{sift_s / batch_s:.2f}×** the HF batch call's time (target ≤ 1.1×) and is "
        f"{ratio:.1f}× the one-at-a-time loop; token counts identical on all {n:,} rows "
        f"({report.summary['tokens']['total']:,} tokens)."
    )
    return {"baseline_s": base_s, "hf_batch_s": batch_s, "sift_s": sift_s, "ratio": ratio, "rows": n}


if __name__ == "__main__":
    main()
