"""PII: quality on labelled data and speed of Sift's batched pipeline against an analyze() loop.

Quality: `synth_dataset_v2.json` (1,500 texts, the target set) and `generated_small.json` (100 texts
in an older label set, never used for tuning) from presidio-research, default configuration, binary
(PII vs not) and per-entity precision / recall / F2 with overlap >= 0.5 (see
`curation.pii.score_spans`). Out of scope (not detected by Sift, neither misses nor false positives):
ORGANIZATION, TITLE, AGE, NRP, US_DRIVER_LICENSE, and DATE_TIME (off by default). "strict
precision" counts predictions that fall on those out-of-scope spans as false positives too.

Speed: >= 10k chat messages (QuillDB ticket conversations from `tickets.generate_noisy`:
system prompt, ticket, answer; planted PII included). Baseline: one `AnalyzerEngine.analyze()` call
per message, the same engine and filters (`curation.pii.analyze_one`). Sift: `analyze_texts`
(identical texts once, spaCy `nlp.pipe` batches, N forked worker processes). Both must return the
same findings for every message.

Gold sets: per gold span as above (P, R, F2) and, beside it, binary per token like
presidio-research's evaluator (`score_tokens`: a gold token counts as found when any predicted span
covers it, so a city inside a predicted address is found).

    .venv/bin/python bench/bench_pii.py [--conversations 3500] [--processes N] [--skip-quality]
        [--skip-speed] [--skip-gold] [--set multilingual.json]...
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "datasets"))  # the sample generator, imported as `tickets`

CORPORA = ROOT.parent / "shared" / "corpora" / "presidio-research"
GOLD = ROOT / "bench" / "pii_gold"
# Sift's own sets (presidio-research JSON format; see bench/pii_gold/README.md), then presidio-research's.
GOLD_SETS = (
    GOLD / "planted.json",
    GOLD / "multilingual.json",
    GOLD / "clean_technical.json",
    GOLD / "no_names.json",
    CORPORA / "synth_dataset_v2.json",
    CORPORA / "generated_small.json",
)


def gold_sets(analyzer: Any, vanilla: Any, config: Any, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Precision / recall / F2 per entity and the clean-text finding rate on every gold set (or the
    sets named in `only`), Sift's default configuration against vanilla Presidio in the same run;
    per gold span (`score_spans`) and, binary, per token (`score_tokens`, presidio-research's way)."""
    from curation import pii

    out: dict[str, Any] = {}
    for path in GOLD_SETS:
        if not path.exists() or (only and path.name not in only):
            continue
        texts, gold = pii.load_presidio_research(path)
        row: dict[str, Any] = {"texts": len(texts), "spans": sum(len(g) for g in gold)}
        t = time.perf_counter()
        pred = pii.analyze_texts(analyzer, texts, config)
        row["sift"] = pii.score_spans(gold, pred, config.entities)
        row["sift"]["docs_per_second"] = round(len(texts) / (time.perf_counter() - t), 1)
        row["sift"]["tokens"] = pii.score_tokens(texts, gold, pred, config.entities)
        if vanilla is not None:
            t = time.perf_counter()
            pred = pii.predict_vanilla(vanilla, texts, config.entities)
            row["vanilla"] = pii.score_spans(gold, pred, config.entities)
            row["vanilla"]["docs_per_second"] = round(len(texts) / (time.perf_counter() - t), 1)
            row["vanilla"]["tokens"] = pii.score_tokens(texts, gold, pred, config.entities)
        out[path.name] = row
    return out


def quality(analyzer: Any, config: Any) -> dict[str, Any]:
    from curation import pii

    out: dict[str, Any] = {}
    for name in ("synth_dataset_v2.json", "generated_small.json"):
        path = CORPORA / name
        if not path.exists():
            continue
        texts, gold = pii.load_presidio_research(path)
        t = time.perf_counter()
        pred = pii.analyze_texts(analyzer, texts, config)
        dt = time.perf_counter() - t
        r = pii.score_spans(gold, pred, config.entities)
        ov = r["overall"]
        # strict precision: predictions on out-of-scope gold spans count as false positives
        n_pred = sum(len(p) for p in pred)
        correct = round(ov["precision"] * (n_pred - r["ignored_predictions"]))
        r["strict_precision"] = round(correct / n_pred, 4) if n_pred else 0.0
        r["texts"] = len(texts)
        r["docs_per_second"] = round(len(texts) / dt, 1)
        out[name] = r
    return out


def speed(analyzer: Any, config: Any, n_conversations: int, processes: int) -> dict[str, Any]:
    from dataclasses import replace

    from tickets import generate_noisy

    from curation import pii
    from curation.records import Conversation

    rows, _ = generate_noisy(n_conversations, seed=11)
    convs = [Conversation.from_dict({"messages": r["messages"]}) for r in rows]
    texts = [t for c in convs for m in c.messages for _, t in pii.message_fields(m)]
    unique = len(set(texts))
    # warm-up: lazy recognizer loading and regex compilation happen on first use
    pii.analyze_texts(analyzer, texts[:50], config)
    t = time.perf_counter()
    base = [pii.analyze_one(analyzer, x, replace(config, recurring_person_texts=0)) for x in texts]
    t_base = time.perf_counter() - t
    results: dict[str, Any] = {
        "messages": len(texts),
        "unique_messages": unique,
        "baseline_s": round(t_base, 2),
        "baseline_ms_per_message": round(t_base / len(texts) * 1000, 2),
        "runs": [],
    }
    for n in sorted({1, processes}):
        # corpus-level evidence needs the whole batch, which the one-text baseline never sees: off here
        cfg = replace(config, n_process=n, recurring_person_texts=0)
        t = time.perf_counter()
        fast = pii.analyze_texts(analyzer, texts, cfg)
        dt = time.perf_counter() - t
        mismatches = sum(1 for a, b in zip(base, fast, strict=True) if a != b)
        results["runs"].append(
            {
                "processes": n,
                "seconds": round(dt, 2),
                "ms_per_message": round(dt / len(texts) * 1000, 2),
                "speedup": round(t_base / dt, 2),
                "messages_with_different_findings": mismatches,
            }
        )
    results["findings"] = sum(len(x) for x in base)
    return results


def gold_markdown(g: dict[str, Any]) -> list[str]:
    lines = [
        "| set | texts | gold spans | tool | P | R | F2 | token P | token R | clean texts with a finding | PERSON findings on clean texts | docs/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in g.items():
        for who in ("sift", "vanilla"):
            if who not in row:
                continue
            x = row[who]
            o = x["overall"]
            clean = f"{x['clean_texts_with_findings']} of {x['clean_texts']}" if x["clean_texts"] else "—"
            tok = x["tokens"]
            tok_p = f"{tok['precision']:.3f}" if tok["predicted_tokens"] else "—"
            tok_r = f"{tok['recall']:.3f}" if tok["gold_tokens"] else "—"
            lines.append(
                f"| {name} | {row['texts']} | {row['spans']} | {who} | {o['precision']:.3f} | {o['recall']:.3f} | "
                f"{o['f2']:.3f} | {tok_p} | {tok_r} | {clean} | {x['clean_person_findings']} | {x['docs_per_second']} |"
            )
    for name, row in g.items():
        if not row["spans"]:
            continue
        lines += [
            "",
            f"Per entity, {name} (Sift / vanilla Presidio):",
            "",
            "| entity | support | P | R | F2 | vanilla P | vanilla R | vanilla F2 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        van = row.get("vanilla", {}).get("entities", {})
        for e, v in row["sift"]["entities"].items():
            w = van.get(e)
            tail = f"{w['precision']:.3f} | {w['recall']:.3f} | {w['f2']:.3f}" if w else "— | — | —"
            lines.append(
                f"| {e} | {v['support']} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f2']:.3f} | {tail} |"
            )
    return lines


def markdown(q: dict[str, Any], s: dict[str, Any], machine: str, g: dict[str, Any] | None = None) -> str:
    lines = [f"Machine: {machine}", ""]
    if g:
        lines += [*gold_markdown(g), ""]
    if q:
        lines += [
            "| set | texts | binary P | binary R | binary F2 | strict P | ignored preds | docs/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in q.items():
            o = r["overall"]
            lines.append(
                f"| {name} | {r['texts']} | {o['precision']:.3f} | {o['recall']:.3f} | {o['f2']:.3f} | "
                f"{r['strict_precision']:.3f} | {r['ignored_predictions']} | {r['docs_per_second']} |"
            )
        for name, r in q.items():
            lines += ["", f"Per entity, {name}:", "", "| entity | support | P | R | F2 |", "|---|---|---|---|---|"]
            for e, v in r["entities"].items():
                lines.append(f"| {e} | {v['support']} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f2']:.3f} |")
    if s:
        lines += [
            "",
            f"Speed: {s['messages']} messages ({s['unique_messages']} distinct), {s['findings']} findings. "
            f"Baseline analyze() loop: {s['baseline_s']} s ({s['baseline_ms_per_message']} ms/message).",
            "",
            "| Sift pipeline | seconds | ms/message | speedup vs loop | messages with different findings |",
            "|---|---|---|---|---|",
        ]
        for r in s["runs"]:
            lines.append(
                f"| {r['processes']} process(es) | {r['seconds']} | {r['ms_per_message']} | {r['speedup']}× | "
                f"{r['messages_with_different_findings']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conversations", type=int, default=3500, help="ticket conversations (3 messages each)")
    ap.add_argument("--processes", type=int, default=min(os.cpu_count() or 1, 8))
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-gold", action="store_true", help="skip the gold sets against vanilla Presidio")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="score only this gold set (file name, e.g. multilingual.json); repeatable",
    )
    args = ap.parse_args(argv if argv is not None else [])
    from curation import pii

    t = time.perf_counter()
    analyzer = pii.build_analyzer()
    build_s = time.perf_counter() - t
    config = pii.PiiConfig()
    g = {} if args.skip_gold else gold_sets(analyzer, pii.build_vanilla_analyzer(), config, tuple(args.set))
    q = {} if args.skip_quality else quality(analyzer, config)
    s = {} if args.skip_speed else speed(analyzer, config, args.conversations, args.processes)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; analyzer built in {build_s:.1f} s"
    print(markdown(q, s, machine, g), flush=True)
    return {"gold": g, "quality": q, "speed": s, "machine": machine}


if __name__ == "__main__":
    main(sys.argv[1:])
