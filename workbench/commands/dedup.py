"""Dedup from the command line: run it, list clusters and borderline pairs, pick keepers, decide pairs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.dedup import ClusterPage, DedupSummary


def _dedup(args: argparse.Namespace) -> int:
    wb = open_wb(args)

    def progress(stage: str, done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty() and total:
            print(f"\r{stage}: {done}/{total}", end="", file=sys.stderr, flush=True)

    r = wb.dedup(
        threshold=args.threshold,
        num_perm=args.num_perm,
        ngram=args.ngram,
        view=args.view,
        actor=args.actor,
        progress=progress,
    )

    def human(r: DedupSummary) -> str:
        p = r.params
        return (
            f"{r.conversations} conversations: {r.clusters} clusters, {r.duplicates_flagged} flagged "
            f"near_duplicate, {r.exact_groups} exact groups, {r.borderline_pairs} borderline pairs "
            f"(threshold {p['threshold']}, {p['num_perm']} permutations = {p['bands']} bands × {p['rows']} rows, "
            f"{p['ngram']}-word shingles, view {p['view']})\n"
            "see `sift clusters`, `sift borderline`, `sift list --flag near_duplicate`"
        )

    emit(args, r, human)
    return 0


def _clusters(args: argparse.Namespace) -> int:
    r = open_wb(args).dedup_cluster_list(limit=args.limit, offset=args.offset)

    def human(r: ClusterPage) -> str:
        if r.run_id is None:
            return "no dedup run yet: run `sift dedup`"
        out = []
        for c in r.clusters:
            out.append(f"cluster {c['id']} ({c['size']} members, keeper kept for {c['reason']})")
            for m in c["members"]:
                mark = "keep" if m["keeper"] else "dup "
                out.append(f"  {mark} {m['id']}  J≈{m['jaccard']:.2f}  {m['status']:<8} {m['preview'][:70]}")
        out.append(f"({len(r.clusters)} of {r.total} clusters)")
        return "\n".join(out)

    emit(args, r, human)
    return 0


def _borderline(args: argparse.Namespace) -> int:
    pairs = open_wb(args).dedup_pairs(borderline=True, undecided=not args.all)
    r: dict[str, Any] = {"total": len(pairs), "pairs": pairs}
    emit(
        args,
        r,
        lambda r: "\n".join(
            [
                f"{p['a']} ~ {p['b']}  J≈{p['jaccard']:.2f}  {'merged' if p['merged'] else 'apart'}"
                + (f"  decided {p['decision']} by {p['decided_by']}" if p["decision"] else "")
                for p in r["pairs"]
            ]
            + [f"({r['total']} borderline pairs)"]
        ),
    )
    return 0


def _keep(args: argparse.Namespace) -> int:
    r = open_wb(args).keep(args.id, actor=args.actor)
    emit(
        args,
        r,
        lambda r: f"{r.id} is now the keeper of cluster {r.cluster_id}; flagged: {', '.join(r.flagged)}",
    )
    return 0


def _decide(args: argparse.Namespace) -> int:
    r = open_wb(args).decide_pair(args.a, args.b, args.decision, actor=args.actor)
    emit(
        args,
        r,
        lambda r: f"{r.a} ~ {r.b}: {r.decision}; now {r.clusters} clusters, {r.duplicates_flagged} flagged",
    )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("dedup", parents=[common], help="find exact and near-duplicate clusters, flag non-keepers")
    p.add_argument("--threshold", type=float, help="estimated Jaccard for a duplicate (default 0.8)")
    p.add_argument("--num-perm", type=int, help="MinHash permutations (default 128)")
    p.add_argument("--ngram", type=int, help="words per shingle (default 5)")
    p.add_argument("--view", choices=["full", "user"], help="compare every turn (full) or user turns only")
    p.set_defaults(func=_dedup)

    p = sub.add_parser("clusters", parents=[common], help="duplicate clusters of the latest dedup run")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=_clusters)

    p = sub.add_parser("borderline", parents=[common], help="pairs near the threshold, for review")
    p.add_argument("--all", action="store_true", help="include pairs already decided")
    p.set_defaults(func=_borderline)

    p = sub.add_parser("keep", parents=[common], help="make a conversation the keeper of its duplicate cluster")
    p.add_argument("id")
    p.set_defaults(func=_keep)

    p = sub.add_parser("decide", parents=[common], help="call a pair a duplicate or distinct (re-clusters)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("decision", choices=["duplicate", "distinct"])
    p.set_defaults(func=_decide)
