"""`sift llm-endpoint`: the administrator's list of LLM endpoints the app's Augment page may call."""

from __future__ import annotations

import argparse
from typing import Any

from curation.llm import DEFAULT_KEY_ENV
from workbench.cli import UsageError, emit
from workbench.commands import open_wb
from workbench.llm_endpoints import (
    configured_endpoints,
    remove_stored_endpoint,
    set_stored_endpoint,
    stored_endpoints,
)
from workbench.services.core import default_actor
from workbench.store import StoreError


def _show(e: Any) -> dict[str, Any]:
    return {"name": e.name, "url": e.url, "model": e.model, "api_key_env": e.api_key_env}


def _llm_endpoint(args: argparse.Namespace) -> int:
    wb = open_wb(args)
    actor = args.actor or default_actor()
    if args.action == "add":
        if not args.url:
            raise UsageError("sift llm-endpoint add: give NAME and URL")
        set_stored_endpoint(wb.store, args.name, args.url, model=args.model, api_key_env=args.api_key_env, actor=actor)
    elif args.action == "remove" and not remove_stored_endpoint(wb.store, args.name, actor=actor):
        raise StoreError(f"no stored endpoint {args.name!r}")
    r: dict[str, list[Any]] = {
        "stored": [_show(e) for e in stored_endpoints(wb.store)],
        # What the app offers now from this shell's environment (the server's may differ).
        "offered": [e.name for e in configured_endpoints(None, stored=stored_endpoints(wb.store))],
    }
    emit(args, r, lambda r: "\n".join(f"{e['name']}: {e['url']}" for e in r["stored"]) or "no stored endpoints")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "llm-endpoint", parents=[common], help="the LLM endpoints the app may call (server configuration)"
    )
    p.add_argument("action", choices=["add", "remove", "list"])
    p.add_argument("name", nargs="?", default="", help="endpoint name shown in the app")
    p.add_argument("url", nargs="?", help="base URL (add)")
    p.add_argument("--model", help="model name (default: the first the endpoint lists)")
    p.add_argument(
        "--api-key-env",
        default=DEFAULT_KEY_ENV,
        help=f"the server's environment variable holding the key (default {DEFAULT_KEY_ENV}); its value is never stored",
    )
    p.set_defaults(func=_llm_endpoint)
