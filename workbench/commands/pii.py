"""PII from the command line: scan, review findings, redact, and score detection on labelled data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from curation import pii
from workbench.cli import UsageError, emit
from workbench.commands import open_wb
from workbench.services.pii_results import BulkReview, FindingPage, PiiEvalReport, RedactionReport


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


def _auto(values: list[str] | None) -> dict[str, float | None] | None:
    if not values:
        return None
    out: dict[str, float | None] = dict(pii.DEFAULT_AUTO_REDACT)
    for v in values:
        entity, sep, floor = v.partition("=")
        entity = entity.strip().upper()
        if not sep or entity not in (*pii.ENTITIES, pii.DENY_LIST_ENTITY):
            raise UsageError(
                f"--auto-redact takes ENTITY=SCORE or ENTITY=off (entity one of {', '.join(pii.ENTITIES)}), got {v!r}"
            )
        if floor.strip().lower() in ("off", "none", "never"):
            out[entity] = None
            continue
        try:
            out[entity] = float(floor)
        except ValueError:
            raise UsageError(f"--auto-redact {entity}: {floor!r} is not a score (0..1) or 'off'") from None
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
        "auto_redact": _auto(getattr(args, "auto_redact", None)),
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
        ids=args.id,
        dry_run=args.dry_run,
        actor=args.actor,
        progress=_progress(args),
        rescan=args.rescan,
        samples=args.samples,
        **_overrides(args),
    )
    verb = "would redact" if args.dry_run else "redacted"

    def human(r: RedactionReport) -> str:
        reused = f" (reused the stored scan of {r.reused_scan})" if r.reused_scan else ""
        out = [
            f"{r.messages_scanned} messages scanned{reused}; findings: {_counts(r.findings)}",
            f"{verb} {r.conversations_redacted} conversation(s), spans: {_counts(r.spans_redacted)}",
            f"left pending for review (below their entity's auto-redact floor): {_counts(r.pending_left)}",
        ]
        for x in r.samples or ():
            out += [
                f"  {x['conversation_id']} message {x['message_index']} {x['field']} ({x['entity']}):",
                f"    before: {x['before']!r}",
                f"    after:  {x['after']!r}",
            ]
        if args.dry_run:
            out.append("nothing was written; run without --dry-run to redact")
        return "\n".join(out)

    emit(args, r, human)
    return 0


def _scan(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_scan_report(ids=args.id, actor=args.actor, progress=_progress(args), **_overrides(args))
    emit(
        args,
        r,
        lambda r: (
            f"{r.messages_scanned} messages scanned; findings: {_counts(r.findings)} in "
            f"{r.conversations_with_findings} conversation(s); review with `sift pii-findings`"
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

    def human(r: FindingPage) -> str:
        rows = [
            f"{f['id']:>6}  {f['conversation_id']} r{f['revision']} m{f['message_index']} {f['field']} "
            f"[{f['start']}:{f['end']}]  {f['entity']:<14} {f['score']:.2f}  {f['status']:<9} {f['recognizer']}"
            for f in r.findings
        ]
        return "\n".join([*rows, f"({len(rows)} of {r.total})"])

    emit(args, r, human)
    return 0


def _review(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    status = "accepted" if args.accept else "dismissed" if args.dismiss else "pending"
    selectors = {
        "entity": args.entity,
        "text": args.text,
        "recognizer": args.recognizer,
        "min_score": args.min_score,
        "max_score": args.max_score,
    }
    bulk = any(v is not None for v in selectors.values())
    if args.ids:
        if bulk:
            raise UsageError(
                "give finding ids, or selectors (--entity, --text, --recognizer, --min/max-score), not both"
            )
        n = wb.pii_review(args.ids, status, actor=args.actor)
        emit(args, {"updated": n, "status": status}, lambda r: f"{r['updated']} finding(s) {status}")
        return 0
    if not bulk:
        raise UsageError("give finding ids, or --accept --entity E [--min-score F] to accept in bulk")
    if status == "pending":
        raise UsageError("bulk review accepts or dismisses (--accept / --dismiss), it does not reset")
    if args.remember and not (args.dismiss and args.text):
        raise UsageError("--remember goes with --dismiss --text TEXT")
    # The old shape (--accept --entity [--min-score]) acts at once; any other selection asks for --yes.
    legacy = args.accept and args.entity and not (args.text or args.recognizer or args.max_score is not None)
    dry = not (args.yes or legacy)
    if legacy and args.min_score is None:
        selectors["min_score"] = 0.0
    r = wb.pii_bulk_review(status, remember=args.remember, dry_run=dry, actor=args.actor, **selectors)
    verb = "accept" if status == "accepted" else "dismiss"

    def human(r: BulkReview) -> str:
        what = _counts(r.by_entity)
        if dry:
            return f"would {verb} {r.matched} pending finding(s) ({what}); rerun with --yes to do it"
        kept = f"; '{r.remembered}' added to the store's allow-list" if r.remembered else ""
        return f"{r.updated} finding(s) {status} ({what}){kept}"

    if legacy:  # the old shape's JSON
        emit(args, {"updated": r.updated, "status": status}, lambda d: f"{d['updated']} finding(s) {status}")
    else:
        emit(args, r, human)
    return 0


def _allow(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    if args.remove:
        n = wb.pii_allow_remove(args.remove)
        emit(args, {"removed": n}, lambda r: f"removed {r['removed']} term(s)")
        return 0
    r = wb.pii_allow_list()
    emit(
        args,
        r,
        lambda r: "\n".join(f"{t['term']}  ({t['entity'] or 'any'}, {t['added_by']})" for t in r.terms) or "(empty)",
    )
    return 0


def _add(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_add(
        args.id, args.message, args.start, args.end, args.entity, field=args.field, actor=args.actor
    )
    emit(
        args,
        r,
        lambda r: (
            f"added finding {r.finding['id']}: {r.finding['entity']} in message {r.finding['message_index']} "
            f"[{r.finding['start']}:{r.finding['end']}]"
        ),
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    r = open_wb(args).pii_eval(
        args.file, entities=args.entities, min_score=args.min_score, n_process=args.processes, vanilla=args.vanilla
    )

    def human(r: PiiEvalReport) -> str:
        o = r.overall
        out = [
            f"{r.texts} texts, {r.docs_per_second} docs/s; binary (PII vs not): precision {o['precision']:.3f}, "
            f"recall {o['recall']:.3f}, F2 {o['f2']:.3f}"
        ]
        out += [
            f"  {e:<15} support {v['support']:>4}  P {v['precision']:.3f}  R {v['recall']:.3f}  F2 {v['f2']:.3f}"
            for e, v in r.entities.items()
        ]
        for who, x in (("sift", r), ("vanilla Presidio", r.vanilla)):
            if x and x.clean_texts:
                out.append(
                    f"{who}: {x.clean_finding_rate or 0:.1%} of {x.clean_texts} clean texts (no gold span) have a "
                    f"finding; {x.clean_person_findings} PERSON finding(s) in them"
                )
        if r.vanilla:
            v = r.vanilla.overall
            out.append(
                f"vanilla Presidio, same texts: precision {v['precision']:.3f}, recall {v['recall']:.3f}, F2 {v['f2']:.3f}"
            )
            out += [
                f"  {e:<15} support {x['support']:>4}  P {x['precision']:.3f}  R {x['recall']:.3f}  F2 {x['f2']:.3f}"
                for e, x in r.vanilla.entities.items()
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
    p.add_argument(
        "--dry-run", action="store_true", help="show counts by entity and before/after samples, write nothing"
    )
    p.add_argument("--rescan", action="store_true", help="scan again even where a stored scan can be reused")
    p.add_argument("--samples", type=int, default=5, help="before/after samples a dry run shows (default 5)")
    p.add_argument(
        "--auto-redact",
        action="append",
        metavar="ENTITY=SCORE",
        help="redact pending findings of ENTITY from this score without review (ENTITY=off: only reviewed ones); "
        "defaults: "
        + ", ".join(f"{e} {'off' if v is None else v}" for e, v in pii.DEFAULT_AUTO_REDACT.items() if e != "DENY_LIST"),
    )
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

    p = sub.add_parser(
        "pii-review",
        parents=[common],
        help="accept / dismiss findings by id, or in bulk by entity, text, recognizer, score",
    )
    p.add_argument("ids", nargs="*", type=int, help="finding ids")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--accept", action="store_true", help="it is PII: redact it")
    g.add_argument("--dismiss", action="store_true", help="not PII: leave it")
    g.add_argument("--reset", action="store_true", help="back to pending")
    p.add_argument("--entity", help="bulk: every pending finding of this entity ...")
    p.add_argument("--text", help="... whose span is exactly this text (e.g. Java) ...")
    p.add_argument("--recognizer", help="... found by this recognizer (e.g. ProperNounRecognizer) ...")
    p.add_argument("--min-score", type=float, help="... scored at least this ...")
    p.add_argument("--max-score", type=float, help="... and at most this")
    p.add_argument(
        "--remember", action="store_true", help="with --dismiss --text: add the text to the store's allow-list"
    )
    p.add_argument("--yes", action="store_true", help="do the bulk change (without it: only count)")
    p.set_defaults(func=_review)

    p = sub.add_parser("pii-allow", parents=[common], help="list the store's PII allow-list (terms never reported)")
    p.add_argument("--remove", metavar="TERM", help="take a term off the list")
    p.set_defaults(func=_allow)

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
    p.add_argument("--vanilla", action="store_true", help="also score vanilla Presidio on the same texts")
    p.set_defaults(func=_eval)
