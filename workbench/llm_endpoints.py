"""The LLM endpoints the app may call: server configuration only, never a page's free text.

A page picks one by name. Where they come from, in order:
- `$SIFT_LLM_ENDPOINT` (model `$SIFT_LLM_MODEL`, key in `$SIFT_LLM_API_KEY`) as `default`;
- `[llm.endpoints.NAME]` tables in `.streamlit/secrets.toml`, each with `url`, optional `model` and
  optional `api_key_env` (the *name* of the server's environment variable that holds the key);
- the list an administrator keeps in the store with `sift llm-endpoint add|remove|list` (the same
  fields; never a key's value);
- when none is set, `local`: `sift serve-llm` on 127.0.0.1:8000.

The key's value stays in the server's environment: the page sees neither it nor the variable's name
nor whether it is set. The CLI keeps `--endpoint` / `--api-key-env` (its user owns that shell).
No Streamlit here, so the rules can be tested alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from curation.llm import DEFAULT_ENDPOINT, DEFAULT_KEY_ENV, LLMError, endpoint_host, normalize_endpoint

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    url: str
    model: str | None
    api_key_env: str

    @property
    def label(self) -> str:
        """What a page may show: the name and host, never the key or its variable."""
        return f"{self.name} ({endpoint_host(self.url)})"

    def options(self) -> dict[str, Any]:
        return {"endpoint": self.url, "api_key_env": self.api_key_env}


def configured_endpoints(
    secrets: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    stored: list[Endpoint] | None = None,
) -> list[Endpoint]:
    """Every endpoint the server's configuration names; a malformed entry raises LLMError naming it."""
    env = os.environ if env is None else env
    out: list[Endpoint] = []
    if env.get("SIFT_LLM_ENDPOINT"):
        out.append(
            Endpoint(
                "default",
                normalize_endpoint(env["SIFT_LLM_ENDPOINT"]),
                env.get("SIFT_LLM_MODEL") or None,
                DEFAULT_KEY_ENV,
            )
        )
    llm = secrets.get("llm") if secrets is not None and "llm" in secrets else None
    tables = llm.get("endpoints") if isinstance(llm, Mapping) else None
    for name, t in (tables or {}).items() if isinstance(tables, Mapping) else ():
        where = f"secrets.toml [llm.endpoints.{name}]"
        if not isinstance(t, Mapping) or not isinstance(t.get("url"), str):
            raise LLMError(f'{where}: needs url = "http://host:port/v1"')
        key_env = t.get("api_key_env", DEFAULT_KEY_ENV)
        if not isinstance(key_env, str) or not _NAME.match(key_env):
            raise LLMError(f"{where}: api_key_env must name an environment variable")
        model = t.get("model")
        if any(e.name == name for e in out):
            raise LLMError(f"{where}: the name {name!r} is already used")
        out.append(
            Endpoint(str(name), normalize_endpoint(t["url"]), model if isinstance(model, str) else None, key_env)
        )
    for e in stored or []:
        if not any(x.name == e.name for x in out):  # the server's files win over the store's list
            out.append(e)
    if not out:
        out.append(Endpoint("local", DEFAULT_ENDPOINT, env.get("SIFT_LLM_MODEL") or None, DEFAULT_KEY_ENV))
    return out


SETTING = "llm_endpoints"
_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def stored_endpoints(store: Any) -> list[Endpoint]:
    """The administrator's list kept in the store (`sift llm-endpoint`)."""
    raw = store.get_setting(SETTING)
    if not raw:
        return []
    try:
        items = json.loads(raw)
        return [Endpoint(d["name"], d["url"], d.get("model"), d["api_key_env"]) for d in items]
    except (ValueError, KeyError, TypeError):
        raise LLMError(f"the store's {SETTING} setting is damaged; rewrite it with `sift llm-endpoint add`") from None


def set_stored_endpoint(
    store: Any, name: str, url: str, *, model: str | None, api_key_env: str, actor: str
) -> Endpoint:
    if not _ENDPOINT_NAME.match(name):
        raise LLMError(f"endpoint name {name!r}: use letters, digits, '.', '_' or '-' (at most 40)")
    if not _NAME.match(api_key_env):
        raise LLMError(f"--api-key-env {api_key_env!r} must name an environment variable")
    ep = Endpoint(name, normalize_endpoint(url), model or None, api_key_env)
    items = [e for e in stored_endpoints(store) if e.name != name] + [ep]
    store.set_setting(SETTING, json.dumps([asdict(e) for e in items]), actor=actor)
    return ep


def remove_stored_endpoint(store: Any, name: str, *, actor: str) -> bool:
    items = stored_endpoints(store)
    kept = [e for e in items if e.name != name]
    if len(kept) == len(items):
        return False
    store.set_setting(SETTING, json.dumps([asdict(e) for e in kept]), actor=actor)
    return True
