"""Import, inspect and review from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

from workbench.cli import UsageError, emit
from workbench.commands import open_wb
from workbench.services.core import (
    ConversationPage,
    ConversationView,
    ImportReport,
    QuarantinePage,
    Stats,
    UnreadableFile,
)
from workbench.store import STATUSES


def _import(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    column_map: Any = None  # a ColumnMap, or one per file name (a dataset_info.json)
    if args.map:
        from curation.column_map import ColumnMap

        spec = args.map
        if spec.strip().endswith(".json") and ":" not in spec.rsplit("/", 1)[-1]:
            column_map = lambda name: ColumnMap.parse(spec, file_name=name)  # noqa: E731 - one entry per file
        else:
            column_map = ColumnMap.parse(spec)
    join = args.alpaca_join.replace("\\n", "\n").replace("\\t", "\t")
    r = wb.import_files(
        args.files, format=args.format, actor=args.actor, licence=args.licence, column_map=column_map,
        each=args.keep_going, alpaca_join=join,
    )  # fmt: skip

    def human(r: ImportReport) -> str:
        def read_as(enc: str) -> str:
            return "" if enc in ("utf-8", "parquet") else f", read as {enc.upper()}"

        lines = [
            f"{f.path}: not imported: {f.error}"
            if isinstance(f, UnreadableFile)
            else f"{f.path} ({f.format}{read_as(f.encoding)}): {f.rows} rows: {f.imported} imported, "
            f"{f.already_present} already present, {f.quarantined} quarantined"
            for f in r.files
        ]
        t = r.totals
        if len(r.files) > 1:
            lines.append(
                f"total: {t.rows} rows: {t.imported} imported, {t.already_present} already present, "
                f"{t.quarantined} quarantined"
            )
        if t.quarantined:
            lines.append("see `sift quarantine` for the quarantined rows and why")
        return "\n".join(lines)

    emit(args, r, human)
    return 0


def _stats(args: argparse.Namespace) -> int:
    def human(r: Stats) -> str:
        by_status = ", ".join(f"{n} {s}" for s, n in r.by_status.items())
        return (
            f"{r.conversations} conversations ({by_status}), "
            f"{r.revisions} revisions, {r.sources} source files, {r.quarantined} quarantined rows"
        )

    emit(args, open_wb(args).stats(), human)
    return 0


def _show(args: argparse.Namespace) -> int:
    r = open_wb(args).show(args.id, args.revision)

    def human(r: ConversationView) -> str:
        out = [f"conversation {r.id}  status {r.status}  revision {r.revision}"]
        for m in r.messages:
            content = m.get("content")
            text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            out.append(f"[{m['role']}] {text or ''}")
            for c in m.get("tool_calls", []):
                out.append(f"    → {c['name']}({c['arguments']})")
        for f in r.flags:
            out.append(f"! {f['severity']} {f['reason']}: {f['message']}")
        if r.tokens is not None:
            per_turn = ", ".join(f"{t['tokens']}/{t['trained_tokens']}" for t in r.turns or [])
            out.append(f"tokens {r.tokens}, trained {r.trained_tokens} (per turn, tokens/trained: {per_turn})")
        out.append("history:")
        out += [
            f"  {h['at']} {h['actor']}: {h['kind']} {h.get('status') or h.get('text') or ''}".rstrip()
            for h in r.history
        ]
        return "\n".join(out)

    emit(args, r, human)
    return 0


def _list(args: argparse.Namespace) -> int:
    r = open_wb(args).list(
        status=args.status,
        source=args.source,
        flag=args.flag,
        text=args.text,
        tag=args.tag,
        reviewer=args.reviewer,
        limit=args.limit,
        offset=args.offset,
    )

    def human(r: ConversationPage) -> str:
        rows = [
            f"{c['id']}  {c['status']:<8}  r{c['revision']}  {(c['preview'] or '').splitlines()[0][:70] if c['preview'] else ''}"
            for c in r.conversations
        ]
        return "\n".join([*rows, f"({len(rows)} of {r.total})"])

    emit(args, r, human)
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    r = open_wb(args).quarantine(limit=args.limit, offset=args.offset, source=args.source)
    if not args.raw:
        for row in r.rows:
            row.pop("raw")

    def human(r: QuarantinePage) -> str:
        rows = [f"{q['file']}:{q['line']}: {q['field']}: {q['message']}" for q in r.rows]
        return "\n".join([*rows, f"({len(r.rows)} of {r.total})"])

    emit(args, r, human)
    return 0


def _review(status: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        wb = open_wb(args)
        if status == "rejected" and not args.reason:
            raise UsageError("reject needs --reason")
        n = wb.set_status(args.ids, status, actor=args.actor, reason=getattr(args, "reason", None))
        emit(args, {"updated": n, "status": status}, lambda r: f"{r['updated']} conversation(s) {status}")
        return 0

    return run


def _comment(args: argparse.Namespace) -> int:
    open_wb(args).comment(args.id, args.text, actor=args.actor)
    emit(args, {"id": args.id, "comment": args.text}, lambda r: "comment added")
    return 0


def _tag(args: argparse.Namespace) -> int:
    n = open_wb(args).tag(args.ids, args.tag, actor=args.actor, remove=args.remove)
    emit(args, {"updated": n}, lambda r: f"{r['updated']} conversation(s) tagged")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("import", parents=[common], help="import ShareGPT / OpenAI / Alpaca files")
    p.add_argument("files", nargs="+", help=".json, .jsonl or .parquet files")
    p.add_argument("--format", default="auto", choices=["auto", "sharegpt", "openai", "alpaca"])
    p.add_argument(
        "--alpaca-join",
        default="\\n\\n",
        metavar="TEXT",
        help="what joins an Alpaca row's instruction and input into one user turn (\\n escapes allowed); "
        "default a blank line '\\n\\n', LLaMA-Factory uses '\\n'",
    )
    p.add_argument("--licence", help="licence of the data, recorded with the source")
    p.add_argument(
        "--map",
        metavar="SPEC",
        help="column/role mapping as LLaMA-Factory's dataset_info.json describes it: DATASET_INFO.json (the entry "
        "whose file_name is each file's name), DATASET_INFO.json:NAME, or key=column,... (prompt, query, response, "
        "system, history, messages, tools, chosen, rejected; role_tag, content_tag, user_tag, assistant_tag, "
        "observation_tag, function_tag, system_tag; formatting=alpaca|sharegpt; ranking=true)",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="import every readable file and report an unreadable one in its entry (`error`) instead of stopping",
    )
    p.set_defaults(func=_import)

    p = sub.add_parser("stats", parents=[common], help="counts of conversations, revisions, sources")
    p.set_defaults(func=_stats)

    p = sub.add_parser("show", parents=[common], help="one conversation with provenance and history")
    p.add_argument("id")
    p.add_argument("--revision", type=int)
    p.set_defaults(func=_show)

    p = sub.add_parser("list", parents=[common], help="list conversations with filters")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--source", help="source file name or path")
    p.add_argument("--flag", help="a stage's reason code, e.g. empty_content")
    p.add_argument("--text", help="substring of the conversation text")
    p.add_argument("--tag")
    p.add_argument("--reviewer", help="conversations this reviewer acted on")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=_list)

    p = sub.add_parser("quarantine", parents=[common], help="rows that could not be imported, with reasons")
    p.add_argument("--source")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--raw", action="store_true", help="include each row's raw text")
    p.set_defaults(func=_quarantine)

    p = sub.add_parser("accept", parents=[common], help="mark conversations accepted")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=_review("accepted"))
    p = sub.add_parser("reject", parents=[common], help="mark conversations rejected (with a reason)")
    p.add_argument("ids", nargs="+")
    p.add_argument("--reason", required=False)
    p.set_defaults(func=_review("rejected"))
    p = sub.add_parser("reset", parents=[common], help="put conversations back to pending")
    p.add_argument("ids", nargs="+")
    p.set_defaults(func=_review("pending"))

    p = sub.add_parser("comment", parents=[common], help="comment on a conversation")
    p.add_argument("id")
    p.add_argument("text")
    p.set_defaults(func=_comment)

    p = sub.add_parser("tag", parents=[common], help="add (or --remove) a tag")
    p.add_argument("ids", nargs="+")
    p.add_argument("--tag", action="append", required=True)
    p.add_argument("--remove", action="store_true")
    p.set_defaults(func=_tag)
