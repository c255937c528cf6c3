"""Reviewers, the review guide and lists, progress and lineage from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from workbench.cli import UsageError, emit
from workbench.commands import open_wb
from workbench.services.review import ReviewProgress
from workbench.store.review import BUCKETS


def _reviewer_add(args: argparse.Namespace) -> int:
    from workbench.reviewers import add_reviewer, reviewers_path

    path = Path(args.file) if args.file else reviewers_path(args.store or _default_store())
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    r = add_reviewer(path, args.name, password, admin=args.admin)
    emit(
        args,
        {"name": r.name, "admin": r.admin, "file": str(path)},
        lambda d: f"reviewer {d['name']} {'(admin) ' if d['admin'] else ''}saved in {d['file']}",
    )
    return 0


def _default_store() -> str:
    import workbench

    return str(workbench.default_store_path())


def _review_config(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    if args.guide is not None:
        try:
            text = Path(args.guide).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read guide {args.guide}: {e.strerror}") from None
        wb.set_review_guide(text, actor=args.actor)
    if args.tags is not None:
        wb.set_review_tags(args.tags.split(","), actor=args.actor)
    if args.reject_reasons is not None:
        wb.set_reject_reasons(args.reject_reasons.split(";"), actor=args.actor)
    emit(
        args,
        wb.review_config(),
        lambda d: f"{d.guide}\ntags: {', '.join(d.tags) or '-'}\nreject reasons: {'; '.join(d.reject_reasons) or '-'}",
    )
    return 0


def _progress(args: argparse.Namespace) -> int:
    p = open_wb(args).progress(bucket=args.bucket)

    def human(p: ReviewProgress) -> str:
        lines = [", ".join(f"{n} {s}" for s, n in p.by_status.items())]
        lines += [
            f"{r['reviewer']}: {r['accepted']} accepted, {r['rejected']} rejected, {r['edits']} edits, "
            f"{r['comments']} comments on {r['conversations']} conversations"
            for r in p.reviewers
        ]
        lines += [f"{f['stage']}/{f['reason']}: {f['conversations']} ({f['pending']} pending)" for f in p.flags]
        return "\n".join(lines)

    emit(args, p, human)
    return 0


def _lineage(args: argparse.Namespace) -> int:
    emit(args, open_wb(args).lineage(args.id))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("reviewer", parents=[common], help="manage the password-protected reviewer list")
    rsub = p.add_subparsers(dest="reviewer_command", metavar="ACTION", required=True, parser_class=type(p))
    a = rsub.add_parser("add", parents=[common], help="add or replace a reviewer (salted scrypt hash)")
    a.add_argument("name")
    a.add_argument("--admin", action="store_true", help="may edit the review guide and tag lists")
    a.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    a.add_argument("--file", help="reviewer list (default $SIFT_REVIEWERS or sift-reviewers.toml beside the store)")
    a.set_defaults(func=_reviewer_add)

    p = sub.add_parser("review-config", parents=[common], help="show or set the review guide and lists")
    p.add_argument("--guide", help="markdown file to use as this store's review guide")
    p.add_argument("--tags", help="comma-separated tags reviewers pick from")
    p.add_argument("--reject-reasons", help="semicolon-separated reasons for rejecting")
    p.set_defaults(func=_review_config)

    p = sub.add_parser("progress", parents=[common], help="review progress by status, reviewer, flag and time")
    p.add_argument("--bucket", choices=BUCKETS, default="day")
    p.set_defaults(func=_progress)

    p = sub.add_parser(
        "lineage", parents=[common], help="sources, revisions, paraphrases and versions of one conversation"
    )
    p.add_argument("id")
    p.set_defaults(func=_lineage)
