"""An OpenAI-compatible HTTP endpoint over a local transformers model, optionally with a LoRA adapter.

    python -m trainer.serve [--model ID|PATH] [--adapter DIR] [--host 127.0.0.1] [--port 8000]
    sift serve-llm ...            (the same server)

Endpoints: `GET /v1/models` and `POST /v1/chat/completions` (temperature, top_p, max_tokens,
n, seed, stop; usage counts; no streaming). The default model is the embedded SmolLM2-135M-Instruct
(`curation.models.resolve_model()`), so it runs with no network. With `--adapter`, two models are
served: the base (`<base>`) and the base with the adapter (`<base>+<adapter name>`), which lets
generation-based evaluation compare both through one process.

`transformers serve` was checked first: it loads a local path offline, but its `/v1/models` fails
without a hub cache folder, it ignores `n`, and it cannot load a peft adapter, hence this module.

The model is loaded before the socket opens, so `/v1/models` answering means ready. Requests are
generated one at a time (one model, one lock); `/v1/models` stays responsive meanwhile. A request
whose client went away (it timed out or was cancelled) is dropped: while it waits for the lock, or
between two generated tokens; `/health` counts them (`dropped`). Nothing here logs request headers,
so an API key a client sends never reaches a log.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from curation.errors import StageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_N = 16


class ServeError(StageError):
    """The server cannot start (model or adapter missing, port taken); the message says why."""


class ClientGone(Exception):
    """The client of a request disconnected: its generation was not started or was stopped."""


class ChatMessage(BaseModel):
    """One message of a request; content as text, parts (text parts are joined) or null."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request this server honours; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=MAX_N)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False


@dataclass
class Generated:
    text: str
    finish_reason: str
    completion_tokens: int


@dataclass
class LoadedModel:
    """A model (maybe a peft model) and its tokenizer, with the ids it is served under."""

    model: Any
    tokenizer: Any
    base_id: str
    adapter_id: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)
    dropped: int = 0

    @property
    def ids(self) -> list[str]:
        return [self.base_id] + ([self.adapter_id] if self.adapter_id else [])

    def chat(
        self,
        model_id: str,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        n: int,
        seed: int | None,
        stop: list[str],
        gone: threading.Event | None = None,
    ) -> tuple[int, list[Generated]]:
        """(prompt tokens, n generations) for chat `messages`. `gone` set (the client left) stops the
        request while it waits for the model or between two tokens: ClientGone."""
        import contextlib

        import torch

        tok = self.tokenizer
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        prompt_len = int(enc["input_ids"].shape[1])
        limit = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        if limit and prompt_len + max_tokens > limit:
            max_tokens = max(1, limit - prompt_len)
        sample = temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "do_sample": sample,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            "eos_token_id": tok.eos_token_id,
        }
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=n)
        else:
            # Greedy decoding gives one answer; n copies of it is what an OpenAI server returns too.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tok)
        base_only = model_id == self.base_id and self.adapter_id is not None
        if gone is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            client_gone = gone  # bound here: the closure below must not see a later None

            class _Gone(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                    return torch.full((input_ids.shape[0],), client_gone.is_set(), dtype=torch.bool)

            kwargs["stopping_criteria"] = StoppingCriteriaList([_Gone()])
        while not self.lock.acquire(timeout=0.2):
            if gone is not None and gone.is_set():
                self.dropped += 1
                raise ClientGone
        try:
            if gone is not None and gone.is_set():
                self.dropped += 1
                raise ClientGone
            if seed is not None:
                torch.manual_seed(seed)
            ctx = self.model.disable_adapter() if base_only else contextlib.nullcontext()
            with ctx, torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
            if gone is not None and gone.is_set():
                self.dropped += 1
                raise ClientGone
        finally:
            self.lock.release()
        rows = [out[i, prompt_len:].tolist() for i in range(out.shape[0])]
        if not sample:
            rows = rows * n
        ends = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
        gens: list[Generated] = []
        for ids in rows:
            cut = next((i for i, t in enumerate(ids) if t in ends), None)
            used = ids if cut is None else ids[:cut]
            text = tok.decode(used, skip_special_tokens=True)
            count = len(used) + (1 if cut is not None else 0)
            reason = "stop" if cut is not None else "length"
            hit = [i for i in (text.find(s) for s in stop) if i >= 0]
            if hit:
                text = text[: min(hit)]
                count = len(tok.encode(text, add_special_tokens=False)) + 1
                reason = "stop"
            gens.append(Generated(text.strip(), reason, count))
        return prompt_len, gens


def default_threads() -> int:
    """Half the cores: measured on a busy 2-core machine, generation with 2 torch threads ran ~20x
    slower than with 1 (the threads spin-wait on each other whenever one is descheduled)."""
    return max(1, (os.cpu_count() or 2) // 2)


def load(
    model: str | None = None,
    adapter: str | os.PathLike[str] | None = None,
    adapter_name: str | None = None,
    threads: int | None = None,
) -> LoadedModel:
    """Load the (embedded by default) model and tokenizer, and the adapter on top if given."""
    from curation.models import DEFAULT_MODEL, EMBEDDED, ModelError, resolve_model

    try:
        path = resolve_model(model)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except (ModelError, ImportError) as e:
        raise ServeError(f"cannot load the model: {e}") from None
    if not torch.cuda.is_available():
        torch.set_num_threads(threads or default_threads())
    base_id = DEFAULT_MODEL if (model is None or str(model) in EMBEDDED) else str(model)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        lm = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32 if not torch.cuda.is_available() else "auto"
        )
    except (OSError, ValueError) as e:
        raise ServeError(f"cannot load the model {base_id!r}: {e}") from None
    if torch.cuda.is_available():
        lm = lm.to("cuda")  # type: ignore[arg-type]
    adapter_id = None
    if adapter is not None:
        adir = Path(adapter)
        if not (adir / "adapter_config.json").exists():
            raise ServeError(f"{adir} is not a LoRA adapter folder (no adapter_config.json)")
        try:
            from peft import PeftModel
        except ImportError:
            raise ServeError("serving an adapter needs peft (pip install -e '.[train]')") from None
        lm = PeftModel.from_pretrained(lm, str(adir))  # type: ignore[assignment]
        name = adapter_name or (adir.resolve().parent.name if adir.name == "adapter" else adir.name)
        adapter_id = f"{base_id}+{name}"
    lm.eval()
    return LoadedModel(lm, tok, base_id, adapter_id)


def make_app(loaded: LoadedModel) -> Any:
    """The FastAPI app over a loaded model."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    class ApiError(Exception):
        def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
            self.status, self.message, self.type, self.code = status, message, type_, code

    app = FastAPI(title="Sift LLM endpoint", docs_url=None, redoc_url=None)

    def error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}}, status)

    @app.exception_handler(ApiError)
    def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return error(e.status, e.message, e.type, e.code)

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return error(400, f"invalid request: {where}: {first.get('msg', 'invalid')}", "invalid_request_error")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": loaded.created, "owned_by": "sift"} for i in loaded.ids],
        }

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "dropped": loaded.dropped}

    async def chat(req: ChatRequest, request: Request) -> Any:
        """Generation runs in a worker thread; meanwhile this watches the connection, so a client
        that gave up (timed out) does not keep the model busy or hold up the requests behind it."""
        import asyncio

        from starlette.concurrency import run_in_threadpool

        gone = threading.Event()
        work = asyncio.ensure_future(run_in_threadpool(_chat, req, gone))
        while not work.done():
            if await request.is_disconnected():
                gone.set()
                break
            await asyncio.wait({work}, timeout=0.25)
        try:
            return await work
        except ClientGone:
            return error(499, "client closed the request", "client_closed_request")

    # Request is imported here, not at module level: resolve the postponed annotation for FastAPI.
    chat.__annotations__["request"] = Request
    app.post("/v1/chat/completions")(chat)

    def _chat(req: ChatRequest, gone: threading.Event) -> dict[str, Any]:
        if req.stream:
            raise ApiError(400, "streaming is not supported by this server; send stream=false", "invalid_request_error")
        if req.model not in loaded.ids:
            raise ApiError(
                404,
                f"model {req.model!r} is not served here (available: {', '.join(loaded.ids)})",
                "invalid_request_error",
                "model_not_found",
            )
        msgs = []
        for m in req.messages:
            content = m.content
            if isinstance(content, list):
                content = "".join(p.get("text") or "" for p in content if p.get("type") in ("text", None))
            msgs.append({"role": m.role, "content": content or ""})
        stop = [req.stop] if isinstance(req.stop, str) else [s for s in (req.stop or []) if s]
        max_tokens = req.max_completion_tokens or req.max_tokens or 256
        prompt_tokens, gens = loaded.chat(
            req.model,
            msgs,
            max_tokens=max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            n=req.n,
            seed=req.seed,
            stop=stop,
            gone=gone,
        )
        completion = sum(g.completion_tokens for g in gens)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": g.text}, "finish_reason": g.finish_reason}
                for i, g in enumerate(gens)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
        }

    return app


def serve(
    model: str | None = None,
    adapter: str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    adapter_name: str | None = None,
    threads: int | None = None,
    announce: Any = None,
) -> None:
    """Load, then serve until interrupted. `announce(url, ids)` is called once the socket is bound."""
    import socket

    import uvicorn

    # Bind first: a taken port fails in a second, not after loading the model.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    loaded = load(model, adapter, adapter_name, threads)
    app = make_app(loaded)
    bound_port = sock.getsockname()[1]
    url = f"http://{host}:{bound_port}/v1"

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    def started() -> None:
        while not server.started:
            time.sleep(0.05)
        (announce or _print_ready)(url, loaded.ids)

    threading.Thread(target=started, daemon=True).start()
    server.run(sockets=[sock])


def _print_ready(url: str, ids: list[str]) -> None:
    print(f"serving {', '.join(ids)} on {url}", flush=True)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer.serve", description="OpenAI-compatible endpoint over a local model."
    )
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="Hugging Face id or local path (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", help="LoRA adapter folder (e.g. RUN_DIR/adapter), served as <model>+<name>")
    p.add_argument("--adapter-name", help="name of the adapter model (default: the run folder's name)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"listen address (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"listen port (default {DEFAULT_PORT}; 0 = any free)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: half the cores, at least 1)")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        serve(
            args.model,
            args.adapter,
            host=args.host,
            port=args.port,
            adapter_name=args.adapter_name,
            threads=args.threads,
        )
    except ServeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
