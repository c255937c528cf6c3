"""PII on real chat text without labels: what Sift and vanilla Presidio report on the public demo
chat data in `../shared/corpora` (LLaMA-Factory's alpaca_en_demo and glaive_toolcall_en_demo,
FastChat's dummy_conversation, stanford_alpaca's seed_tasks): instructions, answers, tool calls,
stories, code. No gold spans, so no precision figure: the findings by entity and recognizer for
both tools in the same run, and a seeded sample of PERSON findings with their context to read
(`--sample N`), which is how the precision rules of issue 22 were checked on text no set was tuned
on.

    .venv/bin/python bench/bench_pii_unlabelled.py [--sample 40] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"


def texts() -> list[str]:
    """Every non-empty field of the demo chat files: alpaca instruction / input / output, each
    glaive and FastChat turn, each seed task's instruction and instance."""
    out: list[str] = []
    lf = CORPORA / "LLaMA-Factory"
    if (lf / "alpaca_en_demo.json").exists():
        for r in json.loads((lf / "alpaca_en_demo.json").read_text(encoding="utf-8")):
            out += [r.get("instruction", ""), r.get("input", ""), r.get("output", "")]
    for path in (lf / "glaive_toolcall_en_demo.json", CORPORA / "FastChat" / "dummy_conversation.json"):
        if path.exists():
            for r in json.loads(path.read_text(encoding="utf-8")):
                out += [m.get("value", "") for m in r.get("conversations", [])]
    seeds = CORPORA / "stanford_alpaca" / "seed_tasks.jsonl"
    if seeds.exists():
        for line in seeds.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            out.append(r.get("instruction", ""))
            out += [i.get("input", "") + "\n" + i.get("output", "") for i in r.get("instances", [])]
    return [t for t in out if t.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=40, help="PERSON findings to print per tool")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv if argv is not None else [])
    from curation import pii

    data = texts()
    config = pii.PiiConfig()
    analyzer = pii.build_analyzer()
    t = time.perf_counter()
    sift = pii.analyze_texts(analyzer, data, config)
    sift_s = time.perf_counter() - t
    t = time.perf_counter()
    vanilla = pii.predict_vanilla(pii.build_vanilla_analyzer(), data, config.entities)
    vanilla_s = time.perf_counter() - t
    rows: dict[str, Any] = {"texts": len(data), "seconds": {"sift": round(sift_s, 1), "vanilla": round(vanilla_s, 1)}}
    print(f"{len(data)} texts; Sift {sift_s:.1f} s, vanilla Presidio {vanilla_s:.1f} s\n")
    print("| entity | Sift findings | texts with one | vanilla findings | texts with one |\n|---|---|---|---|---|")
    ents = sorted({s.entity for ss in sift + vanilla for s in ss})
    for e in ents:
        a = [sum(s.entity == e for s in ss) for ss in sift]
        b = [sum(s.entity == e for s in ss) for ss in vanilla]
        rows[e] = {"sift": sum(a), "vanilla": sum(b)}
        print(f"| {e} | {sum(a)} | {sum(x > 0 for x in a)} | {sum(b)} | {sum(x > 0 for x in b)} |")
    by_rec = Counter(s.recognizer for ss in sift for s in ss if s.entity == "PERSON")
    rows["sift_person_by_recognizer"] = dict(by_rec)
    print("\nSift PERSON findings by recognizer:", ", ".join(f"{k} {v}" for k, v in by_rec.most_common()))
    for name, pred in (("Sift", sift), ("vanilla Presidio", vanilla)):
        person = [(i, s) for i, ss in enumerate(pred) for s in ss if s.entity == "PERSON"]
        pick = random.Random(args.seed).sample(person, min(args.sample, len(person)))
        print(f"\nA sample of {name}'s PERSON findings (seed {args.seed}), to read:\n")
        for i, s in sorted(pick, key=lambda x: (x[0], x[1].start)):
            text = data[i]
            ctx = text[max(0, s.start - 30) : s.end + 30].replace("\n", "⏎")
            print(f"- {text[s.start : s.end]!r} ({s.recognizer}) … {ctx!r}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
