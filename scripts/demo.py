"""Proof of value: the same model and training config on a raw and on a curated version of the same
noisy ticket-triage pool, both scored on one clean gold set that no pool row was drawn from.

    python scripts/demo.py                 # CPU configuration (minutes on 2 cores)
    python scripts/demo.py --full          # the GPU configuration (bigger pool, 3 training seeds)
    python scripts/demo.py --no-train      # the data side only (what tests/test_demo.py runs)

Training on another machine (a GPU box without Sift's store, as the H100 run in the README did):

    python scripts/demo.py --full --out demo-gpu --bundle .gpu/demo-bundle
        # the data side, then a self-contained folder: the three exports, one trainer config per
        # seed, and jobs.json; `bash scripts/gpu_demo.sh` runs every job with `python -m trainer`
    python scripts/demo.py --full --out demo-gpu --collect RUNS_DIR [--screenshot PNG]
        # `sift import-run` each run folder that came back into the demo store, then the table

The sequence is the documented CLI one, called in-process (`workbench.cli.main`) on a fresh demo
store (default ./demo/, which is replaced on every run):

 1. generate the noisy pool and the gold-eval set (seeded; `tickets.generate_noisy`)
 2. `sift import pool.jsonl`, then `sift freeze raw --include not-rejected --allow-leakage`
    (no curation: a random split, leakage and all, recorded in the manifest)
 3. `sift validate`, `sift dedup`, `sift redact` (then validate and dedup again: a redaction is a new
    revision, and flags belong to the revision they were computed on)
 4. `sift label-audit` (answers whose JSON labels disagree with the rest of the data), then a scripted
    review standing in for the SME: reject near-copies of gold items (eval_leakage), rows with
    blocking flags (validation errors, non-keeper duplicates) and label suspects; accept the rest
 5. `sift freeze curated --parent raw`
 6. a second store holds the gold set: `sift import gold.jsonl`, `sift freeze gold`, `sift export`
 7. `sift train raw|curated --config C --wait` with the same config, whose `extra_eval` names the
    gold export, so both adapters are scored on the same gold items (and raw also on its own eval)
 8. `sift runs` / `sift compare`, then a result table (printed, and in DIR/result.md, result.json)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "datasets"))  # the sample generator, `tickets`

MARKER = ".sift-demo"  # only a folder holding this file is ever deleted by --out reuse

# name → (CPU default, --full preset)
PRESETS: dict[str, tuple[Any, Any]] = {
    "n": (600, 5000),
    "gold": (32, 400),
    "steps": (40, 400),
    # One micro-batch per step: a 135M model's step costs the GPU little but the CPU's kernel
    # launches a lot, so wider batches are nearly free there.
    "batch": (2, 16),
    "grad_accum": (1, 1),
    "lr": (1e-3, 2e-4),  # few CPU steps: a higher rate gets further
    "max_seq_len": (384, 512),
    "eval_limit": (32, 400),
    "max_new_tokens": (128, 192),
    "train_seeds": ("42", "1,2,3"),
    # Seeds for each leave-one-step-out version: none on a CPU (five more runs of ~15 min each; the
    # versions are still frozen, exported and audited), two in the GPU run.
    "ablation_seeds": ("", "1,2"),
    "redact_processes": (2, 8),
    # torch threads per trainer (0: torch's default). On a busy 2-core machine two threads spin-wait
    # on each other whenever one is descheduled: one thread is several times faster there.
    "threads": (1, 0),
}


LEAKAGE_REASON = "leakage: near-copy of a gold eval item"
# The versions trained: raw and curated with every --train-seeds seed, the ablations with --ablation-seeds.
MAIN_VERSIONS = ("raw", "curated")


class DemoError(RuntimeError):
    pass


def sift(store: Path, *argv: str) -> Any:
    """One `sift ... --json` call in this process; its JSON answer (a failure raises DemoError)."""
    from workbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--store", str(store), *argv, "--json"])
    if rc != 0:
        raise DemoError(f"sift {' '.join(argv)} failed ({rc}): {err.getvalue().strip()[-2000:]}")
    text = out.getvalue().strip()
    return json.loads(text.splitlines()[-1]) if text else None


def fresh_dir(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists():
            raise DemoError(f"{out} exists and was not made by this demo (no {MARKER}): pick another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by scripts/demo.py; replaced on every run\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- data side


def generate(data: Path, n: int, gold_size: int, seed: int, realistic: bool = True) -> dict[str, Any]:
    from tickets import generate_noisy, ticket_row

    rows, truth = generate_noisy(n, seed=seed, eval_size=gold_size, realistic=realistic)
    gold = [ticket_row(g, "openai") for g in truth["gold_eval"]]
    write_jsonl(data / "pool.jsonl", rows)
    write_jsonl(data / "gold.jsonl", gold)
    (data / "ground_truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False), encoding="utf-8")
    return {"rows": rows, "truth": truth}


def gold_conversations(data: Path) -> list[Any]:
    from trainer.manifest import read_conversations

    return read_conversations(data / "gold.jsonl")


def scripted_review(store: Path, gold: list[Any], originals: dict[str, Any]) -> dict[str, Any]:
    """The SME stand-in: reject near-copies of gold items, then rows with a blocking flag; accept the rest.

    Gold near-copies are looked for in each conversation as imported (`originals`: store id →
    Conversation): a redaction placeholder must not hide a copy of a test item."""
    from curation.dedup import contamination

    pending = sift(store, "list", "--status", "pending", "--limit", "1000000")["conversations"]
    pool = {c["id"]: originals[c["id"]] for c in pending}
    leaks = contamination({f"gold-{i}": g for i, g in enumerate(gold)}, pool)
    # "<stage>: why": `sift ablate` reads which step a rejection acts on from the reason's prefix.
    rejected: dict[str, str] = {p.eval_id: LEAKAGE_REASON for p in leaks}
    for f in sift(store, "progress")["flags"]:
        # Blocking flags, and the label audit's suspects (the SME stand-in does not try to fix a label).
        if f["severity"] != "error" and f["reason"] != "label_suspect":
            continue
        listed = sift(store, "list", "--flag", f["reason"], "--status", "pending", "--limit", "1000000")
        for c in listed["conversations"]:
            rejected.setdefault(c["id"], f"{f['stage']}: {f['reason']}")
    by_reason: dict[str, list[str]] = {}
    for cid, reason in rejected.items():
        by_reason.setdefault(reason, []).append(cid)
    for reason, ids in sorted(by_reason.items()):
        for chunk in _chunks(sorted(ids)):
            sift(store, "reject", *chunk, "--reason", reason)
    accept = sorted(set(pool) - set(rejected))
    for chunk in _chunks(accept):
        sift(store, "accept", *chunk)
    return {"accepted": len(accept), "rejected": {r: len(v) for r, v in sorted(by_reason.items())}}


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def audit_export(folder: Path, truth: dict[str, Any], pool_ids: list[str]) -> dict[str, Any]:
    """What an exported version carries: planted PII strings (in its files) and the planted problems
    of the ground truth (by store id), per split."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    splits = manifest["version"]["splits"]
    text = "".join((folder / f).read_text(encoding="utf-8") for f in ("train.jsonl", "eval.jsonl"))
    planted = truth["pii_strings"]
    pii_found = [s for s in planted if s in text or json.dumps(s)[1:-1] in text]
    side = {r["id"]: split for split in ("train", "eval") for r in splits[split]}
    problems: dict[str, dict[str, int]] = {"train": {}, "eval": {}}
    dup_pairs = conflicting = 0
    for p in truth["problems"]:
        cid = pool_ids[p["row"]]
        if p["kind"] == "exact_duplicate" or cid not in side:  # an exact copy is stored once, at import
            continue
        problems[side[cid]][p["kind"]] = problems[side[cid]].get(p["kind"], 0) + 1
        if p["kind"] == "near_duplicate" and pool_ids[p["source"]] in side:
            dup_pairs += 1
            conflicting += bool(p.get("conflicting_labels"))
    return {
        "train": len(splits["train"]),
        "eval": len(splits["eval"]),
        "pii_strings": len(pii_found),
        "pii_strings_planted": len(planted),
        "gold_near_copies": {s: problems[s].get("eval_leakage", 0) for s in ("train", "eval")},
        "near_duplicate_pairs": dup_pairs,
        "conflicting_label_pairs": conflicting,
        "planted_problems": {s: dict(sorted(problems[s].items())) for s in problems},
        "own_leakage_pairs": manifest["version"]["leakage_check"]["pairs"],
    }


def pool_conversations(rows: list[dict[str, Any]]) -> list[Any]:
    from curation.formats import map_openai

    return [map_openai(r)[0] for r in rows]


def pool_store_ids(rows: list[dict[str, Any]]) -> list[str]:
    """Store id of each pool row (the content id of what was imported)."""
    return [c.id for c in pool_conversations(rows)]


# ---------------------------------------------------------------- training side


def train_config(args: argparse.Namespace, gold_export: Path | str, seed: int) -> dict[str, Any]:
    cfg = {
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": args.grad_accum,
        "learning_rate": args.lr,
        "max_seq_len": args.max_seq_len,
        "eval_limit": args.eval_limit,
        "eval_loss_limit": args.eval_limit,
        "max_new_tokens": args.max_new_tokens,
        "eval_batch_size": 16,
        "generate_base": bool(args.full),  # the base model's answers are for the GPU run only (time)
        "gradient_checkpointing": False,  # a 135M model fits without it; recomputing costs time
        "logging_steps": 10,
        "seed": seed,
        "extra_eval": str(gold_export.resolve()) if isinstance(gold_export, Path) else gold_export,
    }
    if args.full:
        # 400 gold and 400 own-eval answers per run: wide generation batches keep a GPU busy.
        cfg["eval_batch_size"] = 100
        # The base model's answers are the same for every seed: generate them in the first seed's runs.
        cfg["generate_base"] = seed == args.train_seeds[0]
        # The forgetting guard's generic eval (base vs tuned on the set Sift ships): a few prompts.
        cfg["generic_eval"] = "builtin:generic"
        # The memorisation probe, conversations holding PII first: raw's must show it.
        cfg["probe_limit"] = 32
    if args.backend:
        cfg["backend"] = args.backend
    return cfg


def scores(metrics: dict[str, Any]) -> dict[str, Any]:
    tuned = metrics.get("tuned") or {}
    gold = (metrics.get("extra_eval") or {}).get("tuned") or {}
    keys = ("json_field_accuracy", "json_exact", "json_valid", "rouge_l")
    return {
        "own": {k: tuned.get(k) for k in keys},
        "gold": {k: gold.get(k) for k in keys},
        "own_eval_loss": metrics.get("eval_loss"),
        "gold_eval_loss": (metrics.get("extra_eval") or {}).get("eval_loss"),
    }


def agg(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}"


# ---------------------------------------------------------------- report


def table(result: dict[str, Any]) -> str:
    a = result["audit"]
    raw, cur = a["raw"], a["curated"]
    lines = ["| | raw | curated |", "|---|---|---|"]

    def row(label: str, r: Any, c: Any) -> None:
        lines.append(f"| {label} | {r} | {c} |")

    row("conversations (train / eval)", f"{raw['train']} / {raw['eval']}", f"{cur['train']} / {cur['eval']}")
    runs = result.get("runs")
    if runs and runs.get("raw") and runs.get("curated"):
        n = len(result["config"]["train_seeds"])
        sfx = f" (mean ± sd of {n} seeds)" if n > 1 else ""
        for key, label in (
            ("json_field_accuracy", "**gold eval: field accuracy**"),
            ("json_exact", "gold eval: all three fields right"),
            ("json_valid", "gold eval: answer ends in valid JSON"),
        ):
            row(label + sfx, *(agg([s["gold"][key] for s in runs[v]]) for v in ("raw", "curated")))
            if key != "json_valid":
                row(f"paired gain curated − raw, {key} (clear if > 2 sd)", "", paired_gain(runs, key))
        row(
            "own eval split: field accuracy" + sfx,
            *(agg([s["own"]["json_field_accuracy"] for s in runs[v]]) for v in ("raw", "curated")),
        )
        row(
            "own eval minus gold (overestimate)",
            *(
                agg(
                    [
                        s["own"]["json_field_accuracy"] - s["gold"]["json_field_accuracy"]
                        for s in runs[v]
                        if s["own"]["json_field_accuracy"] is not None and s["gold"]["json_field_accuracy"] is not None
                    ]
                )
                for v in ("raw", "curated")
            ),
        )
        row(
            "eval loss: own split / gold (lower is better)",
            *(
                " / ".join(agg([s[k] for s in runs[v]]) for k in ("own_eval_loss", "gold_eval_loss"))
                for v in ("raw", "curated")
            ),
        )
    row(
        "planted PII strings in the export",
        f"{raw['pii_strings']} of {raw['pii_strings_planted']}",
        f"{cur['pii_strings']} of {cur['pii_strings_planted']}",
    )
    row(
        "gold near-copies in the version (train / eval)",
        f"{raw['gold_near_copies']['train']} / {raw['gold_near_copies']['eval']}",
        f"{cur['gold_near_copies']['train']} / {cur['gold_near_copies']['eval']}",
    )
    row("eval rows duplicating train (freeze's leakage check)", raw["own_leakage_pairs"], cur["own_leakage_pairs"])
    row(
        "near-duplicate pairs kept (with conflicting labels)",
        f"{raw['near_duplicate_pairs']} ({raw['conflicting_label_pairs']})",
        f"{cur['near_duplicate_pairs']} ({cur['conflicting_label_pairs']})",
    )
    for k in ("broken_structure", "overlong", "wrong_label", "label_confusion", "biased_annotator", "templated_answer"):
        row(
            f"planted `{k}` rows in train",
            raw["planted_problems"]["train"].get(k, 0),
            cur["planted_problems"]["train"].get(k, 0),
        )
    return "\n".join(lines)


def paired_gain(runs: dict[str, list[dict[str, Any]]], key: str, a: str = "raw", b: str = "curated") -> str:
    """Mean ± sd over shared training seeds of (b − a) on the gold set; "clear" when mean > 2 sd."""
    sa = {
        s["seed"]: s["gold"][key] for s in runs.get(a, []) if s.get("seed") is not None and s["gold"][key] is not None
    }
    sb = {
        s["seed"]: s["gold"][key] for s in runs.get(b, []) if s.get("seed") is not None and s["gold"][key] is not None
    }
    d = [sb[k] - sa[k] for k in sorted(set(sa) & set(sb))]
    if len(d) < 2:
        return f"{d[0]:+.3f} (one seed)" if d else "–"
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    return f"{mean:+.3f} ± {sd:.3f} over {len(d)} seeds: " + ("**clear**" if mean > 2 * sd else "not clear")


def attribution_markdown(result: dict[str, Any]) -> str:
    """What each step bought (from `sift attribution curated`), with the ground truth's counts of what
    each version carries (planted problems in train, planted PII strings in the files)."""
    att = result["attribution"]
    field, exact = att["json_field_accuracy"], att.get("json_exact") or {"steps": []}
    by_version_exact = {r["version"]: r for r in exact["steps"]}
    full = field["full"]
    lines = [
        f"What each step bought (gold field accuracy of curated − the version without the step, paired by "
        f"seed; curated: {_pm(full['mean'], full['sd'])} over seeds {full['seeds']})",
        "",
        "| left out | version | runs | gold field acc. | bought: field acc. | bought: all three right | rows put back "
        "| redactions undone | PII findings | planted PII strings | gold near-copies (train) | planted label noise in train |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    label_kinds = ("wrong_label", "label_confusion", "biased_annotator", "templated_answer")
    for r in field["steps"]:
        a = result["audit"].get(r["version"]) or {}
        d = r.get("data") or {}
        e = by_version_exact.get(r["version"]) or {}
        noise = sum((a.get("planted_problems") or {}).get("train", {}).get(k, 0) for k in label_kinds)
        lines.append(
            f"| {r['label']} | {r['version']} | {r['runs']} | {_pm(r['mean'], r['sd'])} | "
            f"{_pm(r['bought'], r['bought_sd'], sign=True)}{' (clear)' if r['clear'] else ''} | "
            f"{_pm(e.get('bought'), e.get('bought_sd'), sign=True)} | {r.get('added') if r.get('added') is not None else '–'} | "
            f"{r.get('reverted') if r.get('reverted') is not None else '–'} | {d.get('pii_findings', '–')} | "
            f"{a.get('pii_strings', '–')} | {(d.get('held_out_near_copies') or {}).get('train', '–')} | {noise if a else '–'} |"
        )
    return "\n".join(lines)


def _pm(mean: float | None, sd: float | None, sign: bool = False) -> str:
    if mean is None:
        return "–"
    m = f"{mean:+.3f}" if sign else f"{mean:.3f}"
    return m if sd is None else f"{m} ± {sd:.3f}"


# ---------------------------------------------------------------- main


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Sift proof of value: raw vs curated on one gold eval set.")
    p.add_argument("--out", type=Path, default=ROOT / "demo", help="demo folder (replaced; default ./demo)")
    p.add_argument("--full", action="store_true", help="the GPU preset (bigger pool, more steps, 3 seeds)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and of both splits")

    def sized(flag: str, kind: type, what: str) -> None:
        cpu, full = PRESETS[flag.lstrip("-").replace("-", "_")]
        p.add_argument(flag, type=kind, help=f"{what} (default {cpu}, --full {full})")

    sized("--n", int, "pool size")
    sized("--gold", int, "gold eval items")
    sized("--steps", int, "optimizer steps per run")
    sized("--batch", int, "conversations per micro-batch")
    sized("--grad-accum", int, "micro-batches per step")
    sized("--lr", float, "learning rate")
    sized("--max-seq-len", int, "tokens per row")
    sized("--eval-limit", int, "items generated per eval set (own eval and gold)")
    sized("--max-new-tokens", int, "longest generated answer")
    sized("--train-seeds", str, "comma-separated training seeds")
    sized("--ablation-seeds", str, "comma-separated training seeds of each leave-one-step-out version")
    p.add_argument(
        "--random-noise-only",
        action="store_true",
        help="the earlier pool: uniformly random wrong labels only (no confusion, biased annotator, macro answers)",
    )
    sized("--redact-processes", int, "PII worker processes")
    sized("--threads", int, "torch threads per trainer, 0: torch's default")
    p.add_argument("--no-train", action="store_true", help="stop after the versions and their audit")
    p.add_argument("--backend", choices=["auto", "hf", "unsloth"], help="trainer backend (default: the config's auto)")
    p.add_argument(
        "--bundle",
        type=Path,
        help="after the data side, write a folder to train elsewhere (exports, configs, jobs.json) instead of training",
    )
    p.add_argument(
        "--collect",
        type=Path,
        help="import the run folders under this folder (trained from --bundle) into the demo store, then report",
    )
    p.add_argument(
        "--run-bundle",
        type=Path,
        help="train every job of this bundle here, one at a time (no GPU needed), then collect them into --out",
    )
    p.add_argument("--screenshot", type=Path, help="after training, save a PNG of the Compare page here")
    p.add_argument(
        "--recipes",
        action="store_true",
        help="with --bundle: also a DoRA and a full fine-tuning (lora: false, bf16) job of curated, first seed "
        "(issue 20's recipes beside QLoRA; imported by --collect, left out of the raw/curated table)",
    )
    return p


# Issue 20's recipes beside the QLoRA runs: name → config changes. Full fine-tuning moves every weight,
# so it takes a lower rate than the adapter (1/10 of it).
RECIPES: dict[str, dict[str, Any]] = {
    "dora": {"use_dora": True},
    "fullft": {"lora": False, "lr_factor": 0.1},
}


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    for name, (cpu, full) in PRESETS.items():
        if getattr(args, name) is None:
            setattr(args, name, full if args.full else cpu)
    args.train_seeds = [int(s) for s in str(args.train_seeds).split(",") if s.strip()]
    args.ablation_seeds = [int(s) for s in str(args.ablation_seeds).split(",") if s.strip()]
    return args


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    t_start = time.monotonic()
    out: Path = args.out.resolve()
    fresh_dir(out)
    data, exports = out / "data", out / "exports"
    data.mkdir()
    store, gold_store = out / "sift.duckdb", out / "gold.duckdb"
    timings: dict[str, float] = {}

    def step(name: str) -> Any:
        log(f"== {name}")
        return _Timer(timings, name)

    with step("generate"):
        generated = generate(data, args.n, args.gold, args.seed, realistic=not args.random_noise_only)
        truth = generated["truth"]
        log(f"pool {args.n} rows, gold {len(truth['gold_eval'])}, planted {truth['counts']}")
    with step("import + freeze raw"):
        imported = sift(store, "import", str(data / "pool.jsonl"))
        raw = sift(store, "freeze", "raw", "--include", "not-rejected", "--seed", str(args.seed), "--allow-leakage")
        log(f"imported {imported['totals']}; raw: {raw['train']} train, {raw['eval']} eval")
    curation: dict[str, Any] = {}
    with step("validate, dedup, redact"):
        seq = ["--max-seq-len", str(args.max_seq_len)]
        curation["validate"] = sift(store, "validate", *seq)
        curation["dedup"] = sift(store, "dedup")
        # `sift redact`'s own defaults, no role policy tuned to this data: it changes only what it is
        # sure of (e-mails, phones, cards, IBANs); names and addresses wait for review. The scripted
        # reviewer accepts them all, and redact applies them (reusing the scan: nothing is detected twice).
        procs = ["--processes", str(args.redact_processes)]
        curation["redact"] = sift(store, "redact", *procs)
        curation["pii_review"] = sift(store, "pii-review", "--accept", "--min-score", "0", "--yes")
        curation["redact_reviewed"] = sift(store, "redact", *procs)
        # The redacted revisions are new: check them again (cached for every unchanged revision).
        curation["validate_after_redact"] = sift(store, "validate", *seq)
        curation["dedup_after_redact"] = sift(store, "dedup")
        # Labels that disagree with the rest of the data (wrong labels, conflicting copies): warnings for review.
        curation["labels"] = sift(store, "label-audit")
        log(
            f"validate flagged {curation['validate']['flagged']}; dedup {curation['dedup']['duplicates_flagged']} "
            f"duplicates; redacted {curation['redact']['conversations_redacted']} conversations; "
            f"label audit flagged {curation['labels']['flagged']}"
        )
    gold = gold_conversations(data)
    ids = pool_store_ids(generated["rows"])
    with step("scripted review"):
        originals = dict(zip(ids, pool_conversations(generated["rows"]), strict=True))
        curation["review"] = scripted_review(store, gold, originals)
        log(f"review: {curation['review']}")
    with step("freeze curated"):
        curated = sift(store, "freeze", "curated", "--seed", str(args.seed), "--parent", "raw")
        log(f"curated: {curated['train']} train, {curated['eval']} eval, left out {curated['excluded']}")
    with step("gold version"):
        sift(gold_store, "import", str(data / "gold.jsonl"))
        gold_v = sift(gold_store, "freeze", "gold", "--include", "not-rejected", "--eval-fraction", "0.99")
        sift(gold_store, "export", "gold", "--format", "openai", "--out", str(exports / "gold"))
        log(f"gold: {gold_v['eval']} eval items (and {gold_v['train']} in its train split, unused)")
    with step("ablate"):
        # Leave-one-step-out versions of curated (parent: curated), each counted against the gold items.
        ablated = sift(store, "ablate", "curated", "--held-out", str(exports / "gold"))
        curation["ablate"] = ablated
        ablations = [a["version"] for a in ablated["ablations"] if not a.get("skipped")]
        for a in ablated["ablations"]:
            log(
                f"{a['step']}: {a.get('skipped') or str(a['added']) + ' rows back, ' + str(a['reverted']) + ' reverted'}"
            )
    versions = [*MAIN_VERSIONS, *ablations]
    with step("exports"):
        for v in versions:
            sift(store, "export", v, "--format", "openai", "--out", str(exports / v))
    with step("audit exports"):
        audit = {v: audit_export(exports / v, truth, ids) for v in versions}
    result: dict[str, Any] = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "versions": {"raw": raw, "curated": curated, "gold": gold_v},
        "ablations": ablations,
        "curation": curation,
        "audit": audit,
        "timings_s": timings,
    }
    if args.bundle:
        with step("bundle"):
            result["bundle"] = write_bundle(args, out, exports, args.bundle.resolve(), ablations)
            log(f"bundle for training elsewhere: {args.bundle} ({len(result['bundle']['jobs'])} jobs)")
    elif not args.no_train:
        with step("train"):
            result["runs"], result["run_ids"] = train_all(args, store, out, exports / "gold", ablations, log)
        finish(result, store)
        if args.screenshot:
            with step("screenshot"):
                screenshot(store, args.screenshot)
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    result["machine"] = machine()
    return report(result, out, log)


def jobs_for(args: argparse.Namespace, ablations: list[str]) -> list[tuple[str, int]]:
    """(version, training seed) of every run: raw and curated with each seed, an ablation with the
    first --ablation-seeds seeds."""
    return [(v, seed) for seed in args.train_seeds for v in MAIN_VERSIONS] + [
        (v, seed) for seed in args.ablation_seeds for v in ablations
    ]


def finish(result: dict[str, Any], store: Path) -> None:
    """Compare's metrics and the attribution table for the runs in `result`."""
    every = [rid for ids in result["run_ids"].values() for rid in ids]
    result["compare"] = {r["run_id"]: r["metrics"] for r in sift(store, "compare", *every)["runs"]}
    for metric in ("json_field_accuracy", "json_exact"):
        result.setdefault("attribution", {})[metric] = sift(store, "attribution", "curated", "--metric", metric)


def report(result: dict[str, Any], out: Path, log: Any) -> dict[str, Any]:
    result["table"] = table(result)
    if result.get("attribution"):
        result["table"] += "\n\n" + attribution_markdown(result)
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    (out / "result.md").write_text(result["table"] + "\n", encoding="utf-8")
    log(result["table"])
    if result.get("wall_s") is not None:
        log(f"total {result['wall_s']} s on {result['machine']}")
    return result


def train_all(
    args: argparse.Namespace, store: Path, out: Path, gold_export: Path, ablations: list[str], log: Any
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str]]]:
    if args.threads:  # read by torch when the trainer process starts
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    runs: dict[str, list[dict[str, Any]]] = {}
    ids: dict[str, list[str]] = {}
    for v, seed in jobs_for(args, ablations):
        cfg_path = out / f"train_config.seed{seed}.json"
        cfg_path.write_text(json.dumps(train_config(args, gold_export, seed), indent=2), encoding="utf-8")
        t0 = time.monotonic()
        r = sift(store, "train", v, "--config", str(cfg_path), "--wait")
        if r["state"] != "succeeded":
            raise DemoError(f"training {v} (seed {seed}) ended {r['state']}; see {r['out_dir']}/train.log")
        listed = {x["run_id"]: x for x in sift(store, "runs", "--version", v)["runs"]}
        sc = scores(listed[r["run_id"]]["metrics"])
        sc["seed"] = seed
        runs.setdefault(v, []).append(sc)
        ids.setdefault(v, []).append(r["run_id"])
        log(
            f"{v} seed {seed}: gold field accuracy {sc['gold']['json_field_accuracy']}, own "
            f"{sc['own']['json_field_accuracy']} ({time.monotonic() - t0:.0f} s, run {r['run_id']})"
        )
    return runs, ids


def write_bundle(
    args: argparse.Namespace,
    out: Path,
    exports: Path,
    bundle: Path,
    ablations: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Everything `python -m trainer` needs on a machine without Sift's store: the exports (verified
    there by their manifests), one config per seed naming the gold export by a path relative to the
    bundle, and jobs.json (run in the bundle folder: `python -m trainer --manifest M --config C --out O`)."""
    if bundle.exists():
        if not (bundle / "jobs.json").exists():
            raise DemoError(f"{bundle} exists and is not a demo bundle (no jobs.json): pick another --bundle")
        shutil.rmtree(bundle)
    (bundle / "configs").mkdir(parents=True)
    for v in (*MAIN_VERSIONS, *ablations, "gold"):
        shutil.copytree(exports / v, bundle / "exports" / v)
    jobs = []
    for v, seed in jobs_for(args, list(ablations)):
        cfg = bundle / "configs" / f"seed{seed}.json"
        if not cfg.exists():
            cfg.write_text(json.dumps(train_config(args, "exports/gold", seed), indent=2), encoding="utf-8")
        name = f"{v}-seed{seed}"
        jobs.append({"name": name, "version": v, "seed": seed, "manifest": f"exports/{v}",
                     "config": f"configs/{cfg.name}", "out": f"runs/{name}"})  # fmt: skip
    if getattr(args, "recipes", False):
        seed = args.train_seeds[0]
        for recipe, change in RECIPES.items():
            c = train_config(args, "exports/gold", seed)
            c["generate_base"] = False
            c["learning_rate"] = c["learning_rate"] * change.get("lr_factor", 1)
            c.update({k: v for k, v in change.items() if k != "lr_factor"})
            cfg = bundle / "configs" / f"seed{seed}-{recipe}.json"
            cfg.write_text(json.dumps(c, indent=2), encoding="utf-8")
            name = f"curated-{recipe}-seed{seed}"
            jobs.append({"name": name, "version": "curated", "seed": seed, "recipe": recipe,
                         "manifest": "exports/curated", "config": f"configs/{cfg.name}", "out": f"runs/{name}"})  # fmt: skip
    # What `sift train` writes into a run folder before training: the hashes of the version's PII
    # strings, for the memorisation probe (without it the probe has nothing to look for).
    import workbench

    wb = workbench.open(out / "sift.duckdb")
    for job in jobs:
        (bundle / job["out"]).mkdir(parents=True, exist_ok=True)
        wb._write_pii_strings(job["version"], bundle / job["out"])
    (bundle / "jobs.json").write_text(json.dumps(jobs, indent=1), encoding="utf-8")
    (out / "bundle.json").write_text(json.dumps({"bundle": str(bundle), "jobs": jobs}, indent=1), encoding="utf-8")
    return {"path": str(bundle), "jobs": jobs}


def run_bundle(bundle: Path, threads: int, log: Any = print) -> Path:
    """Train every job of a bundle here, one after another, as the GPU machine does (`python -m trainer`
    in the bundle folder): the whole bundle → import-run path on a machine without a GPU."""
    import subprocess

    bundle = bundle.resolve()
    jobs = json.loads((bundle / "jobs.json").read_text(encoding="utf-8"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    for job in jobs:
        done = bundle / job["out"] / "status.json"
        if done.exists() and '"succeeded"' in done.read_text(encoding="utf-8"):
            continue
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "trainer", "--manifest", job["manifest"], "--config", job["config"],
               "--out", job["out"]]  # fmt: skip
        (bundle / job["out"]).parent.mkdir(parents=True, exist_ok=True)
        with open(bundle / f"{job['out']}.log", "wb") as logf:
            rc = subprocess.call(cmd, cwd=bundle, env=env, stdout=logf, stderr=subprocess.STDOUT)
        log(f"{job['name']}: rc {rc} ({time.monotonic() - t0:.0f} s)")
    return bundle / "runs"


def collect(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Import the run folders of a bundle's jobs (trained elsewhere) into the demo store; report."""
    out: Path = args.out.resolve()
    store = out / "sift.duckdb"
    try:
        result = json.loads((out / "result.json").read_text(encoding="utf-8"))
        jobs = json.loads((out / "bundle.json").read_text(encoding="utf-8"))["jobs"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise DemoError(f"{out} holds no bundled demo (run --bundle first): {e}") from None
    runs_dir: Path = args.collect.resolve()
    runs: dict[str, list[dict[str, Any]]] = {}
    ids: dict[str, list[str]] = {}
    missing = []
    for job in jobs:
        folder = runs_dir / job["name"]
        if not (folder / "status.json").exists():
            missing.append(job["name"])
            continue
        try:
            r = sift(store, "import-run", str(folder))["runs"][0]
        except DemoError as e:  # a second --collect: the runs imported the first time are reused
            m = re.search(r"already imported as run (\S+)", str(e))
            if m is None:
                raise
            r = {"run_id": m.group(1), "state": "succeeded"}
        if r["state"] != "succeeded":
            log(f"{job['name']} ended {r['state']} (left out of the table); see {folder}/train.log")
            continue
        if job.get("recipe"):  # issue 20's recipes: in the store and on Compare, not in the table
            recipes = result.setdefault("recipes", {})
            listed = {x["run_id"]: x for x in sift(store, "runs", "--version", job["version"])["runs"]}
            recipes[job["name"]] = {"run_id": r["run_id"], **scores(listed[r["run_id"]]["metrics"])}
            log(f"{job['name']} ({job['recipe']}): {recipes[job['name']]}")
            continue
        listed = {x["run_id"]: x for x in sift(store, "runs", "--version", job["version"])["runs"]}
        sc = scores(listed[r["run_id"]]["metrics"])
        sc["seed"] = job["seed"]
        runs.setdefault(job["version"], []).append(sc)
        ids.setdefault(job["version"], []).append(r["run_id"])
        log(
            f"{job['name']}: gold field accuracy {sc['gold']['json_field_accuracy']}, own {sc['own']['json_field_accuracy']}"
        )
    if missing:
        log(f"not found under {runs_dir} (left out of the table): {', '.join(missing)}")
    if not ids.get("raw") or not ids.get("curated"):
        raise DemoError(f"no finished runs of both versions under {runs_dir}")
    seeds = sorted({sc["seed"] for v in MAIN_VERSIONS for sc in runs[v]})
    result["config"]["train_seeds"] = seeds
    result["runs"], result["run_ids"] = runs, ids
    finish(result, store)
    first_job = next(j for j in jobs if (runs_dir / j["name"] / "config.json").exists())
    result["trained_on"] = _trained_on(runs_dir / first_job["name"])
    report(result, out, log)
    if args.screenshot:
        screenshot(store, args.screenshot)
    log(f"trained on {result['trained_on']}")
    return result


def _trained_on(run_dir: Path) -> str:
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    summary = json.loads((run_dir / "status.json").read_text(encoding="utf-8")).get("summary") or {}
    libs = cfg.get("libraries") or {}
    device = summary.get("device") or cfg.get("device") or "?"
    return (
        f"{device}; backend {summary.get('backend', '?')}; torch {libs.get('torch')}, transformers "
        f"{libs.get('transformers')}, peft {libs.get('peft')}, bitsandbytes {libs.get('bitsandbytes')}"
    )


def screenshot(store: Path, path: Path) -> None:
    """The Compare page over the demo store, in headless Chromium (as tests/test_e2e_browser.py does)."""
    import socket
    import subprocess

    from playwright.sync_api import sync_playwright

    from workbench.app_server import wait_until_up

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = {**os.environ, "SIFT_STORE": str(store), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    env["SIFT_REVIEWERS"] = str(store.parent / "no-reviewer-list.toml")
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_until_up(url, proc, timeout=60):
            raise DemoError("streamlit did not start for the screenshot")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(180_000)  # a busy machine renders slowly
            page.goto(url + "/compare")
            main = page.locator('[data-testid="stMain"]')
            main.get_by_role("heading", name="Compare", exact=True).wait_for()
            main.locator('[data-testid="stVegaLiteChart"]').locator("canvas, svg").first.wait_for()
            page.wait_for_timeout(1500)
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=False)
            heading = main.get_by_role("heading", name="What each curation step bought")
            if heading.count():  # the attribution table, in a second picture beside the first
                heading.first.evaluate("e => e.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(500)
                page.screenshot(path=str(path.with_name(f"{path.stem}-attribution{path.suffix}")), full_page=False)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


class _Timer:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> _Timer:
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = round(time.monotonic() - self.t0, 1)


def main(argv: list[str] | None = None) -> int:
    args = resolve(make_parser().parse_args(argv))
    try:
        if args.run_bundle:
            args.collect = run_bundle(args.run_bundle, args.threads)
            collect(args)
        elif args.collect:
            collect(args)
        else:
            run(args)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
