"""PII from the command line: scan, review findings, redact, and score detection on labelled data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from curation import pii
from workbench.cli import UsageError, emit
from workbench.commands import open_wb


def _roles(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out: dict[str, str] = {}
    for v in values:
        role, sep, policy = v.partition("=")
        if not sep or not role:
            raise UsageError(f"--role takes ROLE=POLICY (policy {', '.join(pii.ROLE_POLICIES)}), got {v!r}")
        out[role.strip()] = policy.strip()
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "entities": args.entities,
        "min_score": args.min_score,
        "allow_list": args.allow,
        "deny_list": args.deny,
        "roles": _roles(args.role),
        "n_process": args.processes,
        "operator": getattr(args, "operator", None),
    }


def _progress(args: argparse.Namespace) -> Any:
    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty() and total:
            print(f"\rscanning: {done}/{total} distinct texts", end="", file=sys.stderr, flush=True)

    return progress


def _counts(findings: dict[str, int]) -> str:
    return ", ".join(f"{n} {e}" for e, n in findings.items()) or "none"


def _redact(args: argparse.Namespace) -> int:
    r = open_wb(args).redact(
        ids=args.id, dry_run=args.dry_run, actor=args.actor, progress=_progress(args), **_overrides(args)
    )
    verb = "would redact" if args.dry_run else "redacted"
    emit(
        args,
        r,
        lambda r: (
            f"{r['messages_scanned']} messages scanned; findings: {_counts(r['findings'])}; "
            f"{verb} {r['conversations_redacted']} conversation(s)"
        ),
    )
    return 0


def _scan(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_scan_report(ids=args.id, actor=args.actor, progress=_progress(args), **_overrides(args))
    emit(
        args,
        r,
        lambda r: (
            f"{r['messages_scanned']} messages scanned; findings: {_counts(r['findings'])} in "
            f"{r['conversations_with_findings']} conversation(s); review with `sift pii-findings`"
        ),
    )
    return 0


def _findings(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_findings(
        conversation_id=args.conversation,
        status=args.status,
        entity=args.entity,
        min_score=args.min_score,
        max_score=args.max_score,
        current=not args.all_revisions,
        limit=args.limit,
        offset=args.offset,
    )

    def human(r: dict[str, Any]) -> str:
        rows = [
            f"{f['id']:>6}  {f['conversation_id']} r{f['revision']} m{f['message_index']} {f['field']} "
            f"[{f['start']}:{f['end']}]  {f['entity']:<14} {f['score']:.2f}  {f['status']:<9} {f['recognizer']}"
            for f in r["findings"]
        ]
        return "\n".join([*rows, f"({len(rows)} of {r['total']})"])

    emit(args, r, human)
    return 0


def _review(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    status = "accepted" if args.accept else "dismissed" if args.dismiss else "pending"
    if args.ids:
        if args.entity or args.min_score is not None:
            raise UsageError("give finding ids, or --entity (with --min-score) for a bulk accept, not both")
        n = wb.pii_review(args.ids, status, actor=args.actor)
    else:
        if not args.entity:
            raise UsageError("give finding ids, or --accept --entity E [--min-score F] to accept in bulk")
        if status != "accepted":
            raise UsageError("bulk review (--entity) only accepts")
        n = wb.pii_bulk_accept(args.entity, args.min_score if args.min_score is not None else 0.0, actor=args.actor)
    emit(args, {"updated": n, "status": status}, lambda r: f"{r['updated']} finding(s) {status}")
    return 0


def _add(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_add(
        args.id, args.message, args.start, args.end, args.entity, field=args.field, actor=args.actor
    )
    emit(
        args,
        r,
        lambda r: f"added finding {r['id']}: {r['entity']} in message {r['message_index']} [{r['start']}:{r['end']}]",
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_eval(args.file, entities=args.entities, min_score=args.min_score, n_process=args.processes)

    def human(r: dict[str, Any]) -> str:
        o = r["overall"]
        out = [
            f"{r['texts']} texts, {r['docs_per_second']} docs/s; binary (PII vs not): precision {o['precision']:.3f}, "
            f"recall {o['recall']:.3f}, F2 {o['f2']:.3f}"
        ]
        out += [
            f"  {e:<15} support {v['support']:>4}  P {v['precision']:.3f}  R {v['recall']:.3f}  F2 {v['f2']:.3f}"
            for e, v in r["entities"].items()
        ]
        return "\n".join(out)

    emit(args, r, human)
    return 0


def _detection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--entities", nargs="+", metavar="ENTITY", help=f"entities to detect ({', '.join(pii.ENTITIES)})")
    p.add_argument("--min-score", type=float, help="one score threshold for every entity (default: per entity)")
    p.add_argument("--processes", type=int, help="worker processes for detection (default 1)")


def _policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow", action="append", metavar="TEXT", help="never report this string (repeatable)")
    p.add_argument("--deny", action="append", metavar="TEXT", help="always report this string (repeatable)")
    p.add_argument(
        "--role",
        action="append",
        metavar="ROLE=POLICY",
        help="per-role policy: redact (default), flag (redact only reviewed findings) or skip",
    )
    p.add_argument("--id", action="append", metavar="CONVERSATION", help="only these conversations (repeatable)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("redact", parents=[common], help="detect PII and write redacted revisions")
    _detection_options(p)
    _policy_options(p)
    p.add_argument("--operator", choices=pii.OPERATORS, default=None, help="replacement (default placeholder)")
    p.add_argument("--dry-run", action="store_true", help="count what would be redacted, write nothing")
    p.set_defaults(func=_redact)

    p = sub.add_parser("pii-scan", parents=[common], help="detect PII and store findings for review")
    _detection_options(p)
    _policy_options(p)
    p.set_defaults(func=_scan)

    p = sub.add_parser("pii-findings", parents=[common], help="list PII findings (current revisions)")
    p.add_argument("--conversation", help="conversation id (or a prefix)")
    p.add_argument("--status", choices=pii.FINDING_STATUSES)
    p.add_argument("--entity")
    p.add_argument("--min-score", type=float)
    p.add_argument("--max-score", type=float)
    p.add_argument("--all-revisions", action="store_true", help="include findings of older revisions")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=_findings)

    p = sub.add_parser("pii-review", parents=[common], help="accept / dismiss findings, or accept in bulk")
    p.add_argument("ids", nargs="*", type=int, help="finding ids")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--accept", action="store_true", help="it is PII: redact it")
    g.add_argument("--dismiss", action="store_true", help="not PII: leave it")
    g.add_argument("--reset", action="store_true", help="back to pending")
    p.add_argument("--entity", help="bulk accept: every pending finding of this entity ...")
    p.add_argument("--min-score", type=float, help="... scored at least this")
    p.set_defaults(func=_review)

    p = sub.add_parser("pii-add", parents=[common], help="add a PII span the detector missed")
    p.add_argument("id", help="conversation id")
    p.add_argument("--message", type=int, required=True, help="message index (0-based)")
    p.add_argument("--start", type=int, required=True, help="first character (0-based)")
    p.add_argument("--end", type=int, required=True, help="one past the last character")
    p.add_argument("--entity", required=True)
    p.add_argument(
        "--field", default="content", help="content (default), content[i], tool_calls[i].arguments, reasoning"
    )
    p.set_defaults(func=_add)

    p = sub.add_parser("pii-eval", parents=[common], help="score PII detection against gold spans")
    p.add_argument("file", help="presidio-research JSON (full_text + spans) or text with inline tags")
    _detection_options(p)
    p.set_defaults(func=_eval)
