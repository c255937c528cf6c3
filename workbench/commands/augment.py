"""`sift augment` (paraphrase user turns through an OpenAI-compatible endpoint) and `sift serve-llm`
(the embedded endpoint over a local model)."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from workbench.cli import emit
from workbench.commands import open_wb
from workbench.services.augment import AugmentReport


def _augment(args: argparse.Namespace) -> int:
    import sys

    from curation.llm import DEFAULT_ENDPOINT, DEFAULT_KEY_ENV

    wb = open_wb(args)
    overrides: dict[str, Any] = {
        "endpoint": args.endpoint or os.environ.get("SIFT_LLM_ENDPOINT") or DEFAULT_ENDPOINT,
        "model": args.model or os.environ.get("SIFT_LLM_MODEL") or None,
        "api_key_env": args.api_key_env or DEFAULT_KEY_ENV,
        "n": args.n,
        "turns": args.turns,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
        "max_retries": args.retries,
        "check_pii": False if args.no_pii_check else None,
    }

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\r{done}/{total} parents", end="" if done < total else "\n", file=sys.stderr, flush=True)

    r = wb.augment(
        limit=args.limit, ids=args.ids or None, dry_run=args.dry_run, actor=args.actor, progress=progress, **overrides
    )

    def human(r: AugmentReport) -> str:
        rejected = ", ".join(f"{k} {v}" for k, v in r.rejected.items())
        if r.estimated_tokens is not None:
            t = r.estimated_tokens
            return (
                f"dry run: {r.parents} parents, {r.requested} variations requested; "
                f"{r.calls} calls to make ({r.cached_calls} answered from the cache), "
                f"about {t['prompt']} prompt tokens and at most {t['completion_max']} completion tokens"
            )
        return (
            f"{r.parents} parents, {r.requested} variations requested, {r.generated} generated: "
            f"{r.kept} kept (pending review)"
            + (f", rejected: {rejected}" if rejected else "")
            + f"; {r.calls} calls, {r.cached_calls} from the cache"
        )

    emit(args, r, human)
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from trainer.serve import serve
    except ImportError as e:
        from curation.errors import StageError

        raise StageError(f"serve-llm needs the trainer package and its dependencies: {e}") from None

    def announce(url: str, ids: list[str]) -> None:
        if args.json:
            print(json.dumps({"url": url, "models": ids}), flush=True)
        else:
            print(f"serving {', '.join(ids)} on {url}  (Ctrl-C stops)", flush=True)

    try:
        serve(
            args.model, args.adapter, host=args.host, port=args.port, adapter_name=args.adapter_name,
            threads=args.threads, announce=announce,
        )  # fmt: skip
    except KeyboardInterrupt:
        pass
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("augment", parents=[common], help="paraphrase user turns through an OpenAI-compatible endpoint")
    p.add_argument("--endpoint", help="base URL (default $SIFT_LLM_ENDPOINT or http://127.0.0.1:8000/v1)")
    p.add_argument("--model", help="model name (default $SIFT_LLM_MODEL or the first the endpoint lists)")
    p.add_argument(
        "--api-key-env", help="environment variable holding the API key (default SIFT_LLM_API_KEY); never stored"
    )
    p.add_argument("--n", type=int, default=3, help="variations per parent (default 3)")
    p.add_argument("--limit", type=int, help="paraphrase at most this many parents")
    p.add_argument("--id", dest="ids", action="append", help="paraphrase this conversation (repeatable)")
    p.add_argument("--turns", choices=["first", "all"], help="paraphrase the first user turn (default) or all")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int, help="most tokens per answer (default 256)")
    p.add_argument("--seed", type=int)
    p.add_argument("--concurrency", type=int, help="requests in flight at once (default 4)")
    p.add_argument("--timeout", type=float, help="seconds to wait for one answer (default 120)")
    p.add_argument("--retries", type=int, help="retries after 429, 5xx, timeouts (default 3)")
    p.add_argument("--no-pii-check", action="store_true", help="do not reject variations that add PII")
    p.add_argument("--dry-run", action="store_true", help="count calls and estimate tokens; call nothing")
    p.set_defaults(func=_augment)

    p = sub.add_parser("serve-llm", parents=[common], help="serve a local model as an OpenAI-compatible endpoint")
    p.add_argument("--model", help="Hugging Face id or local path (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", help="LoRA adapter folder (e.g. RUN_DIR/adapter), served as <model>+<name>")
    p.add_argument("--adapter-name", help="name of the adapter model (default: the run folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default 8000; 0 = any free port)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: half the cores, at least 1)")
    p.set_defaults(func=_serve)
