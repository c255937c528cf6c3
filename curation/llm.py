"""LLM access for the stages: any OpenAI-compatible endpoint through the `openai` client.

The API key is read from an environment variable at the moment the client is made and lives only
in that client: it is never part of a config, a cache key, a stored row, an error message or a
log line. Retries (429, 5xx, timeouts, refused connections) back off exponentially with jitter and
honour `Retry-After`; every other failure is reported at once with a message that says what to do.

Responses are cached by the caller (the store), keyed by `cache_key(model, request)`: the model
name plus the exact request parameters, not the endpoint, so a restarted local server on another
port still hits the cache.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from curation.errors import StageError
from curation.records import canonical_json, sha256_hex

DEFAULT_ENDPOINT = "http://127.0.0.1:8000/v1"
DEFAULT_KEY_ENV = "SIFT_LLM_API_KEY"
# What a request may carry besides messages; everything in it is part of the cache key.
REQUEST_PARAMS = ("temperature", "top_p", "max_tokens", "n", "seed", "stop")


class LLMError(StageError):
    """The endpoint could not give an answer; the message names the endpoint (never the key)."""


@dataclass(slots=True)
class LLMConfig:
    """Where the endpoint is and how patiently to talk to it. Stored with each run (no key in it)."""

    endpoint: str = field(
        default=DEFAULT_ENDPOINT,
        metadata={"help": "base URL of an OpenAI-compatible API (…/v1); `sift serve-llm` serves one locally"},
    )
    model: str | None = field(default=None, metadata={"help": "model name (default: the first the endpoint lists)"})
    api_key_env: str = field(
        default=DEFAULT_KEY_ENV,
        metadata={"help": "environment variable holding the API key (the key itself is never stored)"},
    )
    timeout_s: float = field(default=120.0, metadata={"help": "seconds to wait for one answer"})
    max_retries: int = field(
        default=3, metadata={"help": "retries after a 429, a 5xx, a timeout or a refused connection"}
    )
    backoff_s: float = field(default=1.0, metadata={"help": "first retry delay; doubles on each retry (with jitter)"})
    max_backoff_s: float = field(
        default=30.0, metadata={"help": "longest delay between retries (Retry-After included)"}
    )
    concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})

    def __post_init__(self) -> None:
        self.endpoint = normalize_endpoint(self.endpoint)
        if self.timeout_s <= 0:
            raise LLMError(f"timeout must be positive, got {self.timeout_s}")
        if self.max_retries < 0 or self.concurrency < 1:
            raise LLMError("max_retries must be at least 0 and concurrency at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_help() -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in fields(LLMConfig)}


def normalize_endpoint(url: str) -> str:
    """`host:port`, `http://host:port` and `http://host:port/v1/` all become `http://host:port/v1`."""
    url = url.strip()
    if not url:
        raise LLMError("the LLM endpoint URL is empty")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMError(f"not an http(s) endpoint URL: {endpoint_host(url)!r}")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def endpoint_host(url: str) -> str:
    """`host:port` of an endpoint URL, without user, password or query (which may hold a key)."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


def public_url(url: str) -> str:
    """The URL as it may be shown: userinfo and query dropped."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, endpoint_host(url), parts.path, "", ""))


def cache_key(model: str, request: dict[str, Any]) -> str:
    """sha256 of the model and the exact request (messages and parameters)."""
    return sha256_hex(canonical_json({"model": model, **request}))


@dataclass(frozen=True, slots=True)
class Completion:
    """The part of a chat completion the stages use; stored as the cache value."""

    texts: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "texts": list(self.texts),
            "finish_reasons": list(self.finish_reasons),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(
            tuple(d["texts"]),
            tuple(d["finish_reasons"]),
            int(d.get("prompt_tokens") or 0),
            int(d.get("completion_tokens") or 0),
        )


def estimate_tokens(text: str) -> int:
    """About four characters a token (English, BPE tokenizers); for dry runs only."""
    return max(1, (len(text) + 3) // 4)


class LLMClient:
    """Chat completions with retries and clear errors. Thread-safe: one instance per run."""

    def __init__(self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import openai
        except ImportError:  # pragma: no cover - a core dependency
            raise LLMError("LLM access needs the openai package (pip install -e .)") from None
        self.config = config
        self.url = public_url(config.endpoint)
        self.host = endpoint_host(config.endpoint)
        self._openai = openai
        self._sleep = sleep
        self._has_key = bool(os.environ.get(config.api_key_env))
        self._client = openai.OpenAI(
            base_url=config.endpoint,
            # Local servers need no key; the client insists on one, so send a placeholder.
            api_key=os.environ.get(config.api_key_env) or "no-key",
            timeout=config.timeout_s,
            max_retries=0,  # retries are ours: counted, logged nowhere, explained on failure
        )

    # ------------------------------------------------------------ calls

    def models(self) -> list[str]:
        """The model names the endpoint lists."""
        raw = self._with_retries(lambda: self._client.models.with_raw_response.list(), what="list models")
        try:
            return [m.id for m in raw.parse().data]
        except (AttributeError, TypeError, ValueError):
            raise LLMError(
                f"the LLM endpoint {self.url} answered /models with something that is not a model list: "
                f"{_snippet(raw.http_response)}"
            ) from None

    def default_model(self) -> str:
        if self.config.model:
            return self.config.model
        names = self.models()
        if not names:
            raise LLMError(f"the LLM endpoint {self.url} lists no models; pass a model name")
        return names[0]

    def chat(self, model: str, request: dict[str, Any]) -> Completion:
        """One chat completion for `request` (messages + REQUEST_PARAMS)."""
        unknown = set(request) - {"messages", *REQUEST_PARAMS}
        if unknown:
            raise LLMError(f"unsupported request fields: {', '.join(sorted(unknown))}")
        kwargs = {k: v for k, v in request.items() if v is not None}
        raw = self._with_retries(
            lambda: self._client.chat.completions.with_raw_response.create(model=model, **kwargs),
            what="chat completion",
            model=model,
        )
        try:
            resp = raw.parse()
            choices = sorted(resp.choices, key=lambda c: c.index or 0)
            texts = tuple((c.message.content or "") for c in choices)
            reasons = tuple(str(c.finish_reason or "stop") for c in choices)
            usage = resp.usage
        except (AttributeError, TypeError, ValueError):  # ValueError: the body is not JSON
            raise LLMError(
                f"the LLM endpoint {self.url} answered with something that is not an OpenAI chat completion: "
                f"{_snippet(raw.http_response)}"
            ) from None
        if not texts:
            raise LLMError(f"the LLM endpoint {self.url} answered with no choices")
        return Completion(
            texts,
            reasons,
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
        )

    # ------------------------------------------------------------ retries and messages

    def _with_retries(self, call: Callable[[], Any], *, what: str, model: str | None = None) -> Any:
        o = self._openai
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            try:
                return call()
            except (o.RateLimitError, o.InternalServerError, o.APIConnectionError) as e:  # timeouts included
                if attempt == attempts - 1:
                    raise self._explain(e, attempts, what, model) from None
                self._sleep(self._delay(attempt, e))
            except o.OpenAIError as e:  # other statuses, invalid responses: retrying would not help
                raise self._explain(e, attempt + 1, what, model) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, e: Exception) -> float:
        delay = self.config.backoff_s * (2**attempt) * (0.5 + random.random() / 2)
        response = getattr(e, "response", None)
        if response is not None:
            after = response.headers.get("retry-after")
            try:
                delay = max(delay, float(after)) if after is not None else delay
            except ValueError:
                pass
        return min(delay, self.config.max_backoff_s)

    def _explain(self, e: Exception, attempts: int, what: str, model: str | None) -> LLMError:
        o = self._openai
        url = self.url
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if isinstance(e, o.APITimeoutError):
            return LLMError(
                f"the LLM endpoint {url} did not answer within {self.config.timeout_s:g} s ({tries}); "
                "raise the timeout or lower max_tokens"
            )
        if isinstance(e, o.APIConnectionError):
            cause = _root_cause(e)
            return LLMError(
                f"cannot reach the LLM endpoint {url} ({cause}; {tries}); is the server running? "
                "`sift serve-llm` starts the embedded one"
            )
        if isinstance(e, o.APIStatusError):
            status = e.status_code
            detail = _server_message(e)
            if status == 401:
                if self._has_key:
                    return LLMError(
                        f"the LLM endpoint {url} rejected the API key from ${self.config.api_key_env} (HTTP 401)"
                    )
                return LLMError(
                    f"the LLM endpoint {url} needs an API key (HTTP 401): put it in ${self.config.api_key_env}"
                )
            if status == 403:
                return LLMError(f"the LLM endpoint {url} refused access (HTTP 403): {detail}")
            if status == 404:
                if model is not None:
                    return LLMError(f"the LLM endpoint {url} does not serve model {model!r} (HTTP 404): {detail}")
                return LLMError(
                    f"the LLM endpoint {url} has no such API (HTTP 404 for {what}); is the URL right (…/v1)?"
                )
            if status == 429:
                return LLMError(
                    f"the LLM endpoint {url} kept rate-limiting (HTTP 429, {tries}); try again later or lower the concurrency"
                )
            if status >= 500:
                return LLMError(f"the LLM endpoint {url} failed with HTTP {status} ({tries}): {detail}")
            return LLMError(f"the LLM endpoint {url} refused the request (HTTP {status}): {detail}")
        if isinstance(e, o.APIResponseValidationError):
            return LLMError(
                f"the LLM endpoint {url} answered with something that is not an OpenAI {what}: "
                f"{_snippet(getattr(e, 'response', None))}"
            )
        return LLMError(f"the LLM endpoint {url} failed: {type(e).__name__}")


def _root_cause(e: BaseException) -> str:
    seen = e
    while (deeper := seen.__cause__ or seen.__context__) is not None:
        seen = deeper
    text = str(seen) or type(seen).__name__
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
        return "unknown host"
    return text[:120]


def _server_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        msg = err.get("message") if isinstance(err, dict) else body.get("message")
        if msg:
            return " ".join(str(msg).split())[:200]
    response = getattr(e, "response", None)
    text = ""
    if response is not None:
        try:
            text = response.text
        except Exception:
            text = ""
    return " ".join(text.split())[:200] or "no details"


def _snippet(response: Any) -> str:
    """The start of a response body, on one line."""
    try:
        text = response.text
    except Exception:
        text = ""
    return repr(" ".join(str(text).split())[:120])
