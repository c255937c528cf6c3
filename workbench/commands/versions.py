"""Freeze, verify, export and compare versions from the command line."""

from __future__ import annotations

import argparse
from typing import Any

from curation.manifest import EXPORT_FORMATS
from curation.split import INCLUDE
from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.versions import ExportReport, FreezeResult, VersionDiff


def _counts(excluded: dict[str, int]) -> str:
    return ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in excluded.items()) or "none"


def _freeze(args: argparse.Namespace) -> int:
    r = open_wb(args).freeze(
        args.name,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        include=args.include,
        stratify_by=args.stratify_by,
        exclude_unresolved_pii=not args.keep_unresolved_pii,
        parent=args.parent,
        dry_run=args.dry_run,
        allow_leakage=args.allow_leakage,
        allow_unchecked=args.allow_unchecked,
        actor=args.actor,
    )

    def human(r: FreezeResult) -> str:
        head = "would freeze" if r.dry_run else "froze"
        lines = [
            f"{head} {r.version}: {r.train} train, {r.eval} eval; left out: {_counts(r.excluded)}",
            f"manifest sha256 {r.manifest_sha256}",
        ]
        if r.dry_run:
            leaks = r.leakage or []
            lines.append(f"leakage check ({r.leakage_method}): {len(leaks)} eval/train pair(s)")
            lines += [f"  eval {x['eval']} ~ train {x['train']} ({x['similarity']})" for x in leaks]
            lines += [f"note: {w}" for w in r.warnings or []]
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def _verify(args: argparse.Namespace) -> int:
    r = open_wb(args).verify_version(args.name, args.export)
    emit(
        args,
        r,
        lambda r: f"{r.version}: ok" if r.ok else "\n".join([f"{r.version}: FAILED", *r.problems]),
    )
    return 0 if r.ok else 1


def _export(args: argparse.Namespace) -> int:
    r = open_wb(args).export_version(args.name, args.format, args.out)

    def human(r: ExportReport) -> str:
        lines = [f"exported {r.version} as {r.format} to {r.out}: {r.train} train, {r.eval} eval"]
        if r.skipped:
            lines.append(
                f"not expressible as {r.format}, left out of the files: "
                + ", ".join(f"{n} {s}" for s, n in r.skipped.items())
                + " (listed in README.md and manifest.json)"
            )
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def _diff(args: argparse.Namespace) -> int:
    r = open_wb(args).diff_versions(args.a, args.b)

    def human(r: VersionDiff) -> str:
        lines = [f"{r.a} → {r.b}"]
        for s, d in r.splits.items():
            lines.append(
                f"{s}: {len(d['added'])} added, {len(d['removed'])} removed, {len(d['changed'])} changed, "
                f"{d['unchanged']} unchanged"
            )
            lines += [f"  + {c}" for c in d["added"]]
            lines += [f"  - {c}" for c in d["removed"]]
            lines += [f"  ~ {c['id']} r{c['from']} → r{c['to']}" for c in d["changed"]]
        lines += [f"moved {m['id']}: {m['from']} → {m['to']}" for m in r.moved]
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def _versions(args: argparse.Namespace) -> int:
    r = open_wb(args).versions()
    emit(
        args,
        r,
        lambda r: (
            "\n".join(
                f"{v['name']}  {v['created_at']}  {v['actor']}  train {v['train']}  eval {v['eval']}  "
                f"{v['manifest_sha256'][:16]}" + (f"  (from {v['parent']})" if v["parent"] else "")
                for v in r.versions
            )
            or "no versions yet"
        ),
    )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("freeze", parents=[common], help="freeze the current data into a named, immutable version")
    p.add_argument("name")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="share held out for eval (default 0.1)")
    p.add_argument("--seed", type=int, default=42, help="seed of the family hash (default 42)")
    p.add_argument("--include", choices=INCLUDE, default="accepted", help="review statuses to freeze")
    p.add_argument("--stratify-by", metavar="TAG", help="split each 'TAG:value' stratum in the same proportion")
    p.add_argument("--parent", help="the version this one follows (recorded in the manifest)")
    p.add_argument(
        "--keep-unresolved-pii", action="store_true", help="do not leave out rows with unresolved PII findings"
    )
    p.add_argument("--dry-run", action="store_true", help="show counts, exclusions and leakage; write nothing")
    p.add_argument(
        "--allow-leakage",
        action="store_true",
        help="freeze even though eval duplicates train (an uncurated baseline); the pairs are recorded in the manifest",
    )
    p.add_argument(
        "--allow-unchecked",
        action="store_true",
        help="freeze even though rows changed after the last validate/dedup run (their new revisions unchecked)",
    )
    p.set_defaults(func=_freeze)

    p = sub.add_parser("verify", parents=[common], help="recompute a version's hashes (store, and an export)")
    p.add_argument("name")
    p.add_argument("--export", metavar="DIR", help="also check this export folder")
    p.set_defaults(func=_verify)

    p = sub.add_parser("export", parents=[common], help="write a version's train/eval files, manifest and card")
    p.add_argument("name")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    p.add_argument("--out", metavar="DIR", required=True)
    p.set_defaults(func=_export)

    p = sub.add_parser("diff", parents=[common], help="conversations added, removed, changed between versions")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=_diff)

    p = sub.add_parser("versions", parents=[common], help="list versions with counts")
    p.set_defaults(func=_versions)
