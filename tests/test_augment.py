"""Augment end to end: the embedded endpoint (`sift serve-llm`, a real process) through the real
`openai` client, and every failure mode against a small real HTTP server started here (it answers
401, 429, 500, slowly, with garbage or with scripted paraphrases), or stopped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import workbench
from curation import augment as ag
from curation.llm import LLMError, cache_key, endpoint_host, normalize_endpoint
from curation.records import Conversation
from tests.conftest import ROOT, run_sift, write

SECRET = "sk-sift-test-SECRET-7f3a9c"  # a fake API key that must never land anywhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------- a scripted server


class Scripted(ThreadingHTTPServer):
    """An OpenAI-shaped HTTP server: each chat request takes the next behaviour from `script`
    (then `default`): ok, 401, 429, 500, slow, garbage. `answers` maps a user text to the
    assistant's reply; unknown texts get two harmless paraphrases."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[str] = []
        self.default = "ok"
        self.answers: dict[str, str] = {}
        self.finish = "stop"
        self.delay = 1.0
        self.chats = 0
        self.auth: list[str | None] = []
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self, status: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps({"error": {"message": message, "type": "x"}}).encode(), headers=headers)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).encode())

    def do_POST(self) -> None:
        srv = self.server
        req = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        with srv.lock:
            srv.chats += 1
            srv.auth.append(self.headers.get("authorization"))
            mode = srv.script.pop(0) if srv.script else srv.default
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            if mode == "401":
                return self._error(401, "Incorrect API key provided")
            if mode == "429":
                return self._error(429, "Rate limit reached", {"retry-after": "0"})
            if mode == "500":
                return self._error(500, "boom")
            if mode == "garbage":
                return self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
            if mode == "slow":
                time.sleep(srv.delay)
            text = req["messages"][-1]["content"].split(": ", 1)[1]
            words = " ".join(reversed(text.split()))  # far from the original, same length
            answer = srv.answers.get(text, f"1. Put simply, {words}\n2. {words} Thanks.")
            body = {
                "id": "x", "object": "chat.completion", "created": 0, "model": req["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": srv.finish}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50},
            }  # fmt: skip
            return self._send(200, json.dumps(body).encode())
        finally:
            with srv.lock:
                srv.inflight -= 1


@pytest.fixture
def llm() -> Iterator[Scripted]:
    srv = Scripted()
    yield srv
    srv.stop()


TEXTS = [
    "I lost my book today.",
    "My cluster will not start after the upgrade to version 24 this morning.",
    "Where is my invoice?",
]


@pytest.fixture
def wb(tmp_path: Path):
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": t},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i, t in enumerate(TEXTS)
    ]
    w = workbench.open(tmp_path / "aug.duckdb")
    w.import_files([write(tmp_path / "three.jsonl", "\n".join(json.dumps(r) for r in rows))], actor="loader")
    return w


def fast(srv: Scripted, **kw: Any) -> dict[str, Any]:
    return {"endpoint": srv.url, "model": "scripted", "backoff_s": 0.01, "check_pii": False, "actor": "ana", **kw}


# ---------------------------------------------------------------------------------- pure parts


def test_parse_variations_shapes() -> None:
    p = ag.parse_variations
    assert p("1. One way.\n2) Another\n   wrapped line.\n\nHope this helps!") == ["One way.", "Another wrapped line."]
    assert p('Here are 2 paraphrases:\n- "First"\n- **Second**') == ["First", "Second"]
    assert p('```json\n["a b", "c d"]\n```') == ["a b", "c d"]
    assert p('{"paraphrases": [{"text": "x y"}, "z"]}') == ["x y", "z"]
    assert p("Paraphrase 1: alpha\nParaphrase 2: beta") == ["alpha", "beta"]
    assert p("Here you go:\n") == [] and p("   ") == []


def test_facts_are_numbers_and_codes() -> None:
    text = "Replicas on staging-us-8 fall 150s behind. This is a P0 for us: `qdb-1015: null key` at 02:56."
    assert ag.facts(text) == {"staging-us-8", "150s", "p0", "qdb-1015: null key", "02:56"}
    assert ag.check_text(text, text.replace("P0", "P1") + " Really.", ag.AugmentConfig(), 0.5) == (
        "changed_facts",
        {"missing": ["p0"], "added": ["p1"]},
    )


def test_prompt_template_is_versioned() -> None:
    t = ag.PROMPTS[ag.DEFAULT_PROMPT]
    assert len(t.sha256) == 64 and t.sha256 == ag.AugmentConfig().to_dict()["prompt_sha256"]
    assert t.render("hello", 3)[-1] == {"role": "user", "content": "Paraphrase in 3 ways: hello"}
    with pytest.raises(ag.AugmentError, match="unknown prompt template 'nope'"):
        ag.AugmentConfig(prompt_id="nope")


def test_endpoint_urls_never_show_credentials() -> None:
    assert normalize_endpoint("localhost:8000") == "http://localhost:8000/v1"
    assert normalize_endpoint("http://h:1/v1/") == "http://h:1/v1"
    assert endpoint_host("https://user:pw@api.example.com/v1?key=abc") == "api.example.com"
    assert cache_key("m", {"messages": [], "seed": 1}) != cache_key("m", {"messages": [], "seed": 2})


# ---------------------------------------------------------------------------------- filters, provenance, cache


def test_filters_provenance_and_resume_without_duplicates(wb, llm: Scripted) -> None:
    book, cluster, invoice = TEXTS
    llm.answers = {
        book: "Here are 3 paraphrases:\n1. Today I misplaced my book.\n2. I lost my book today.\n3. Today I misplaced my book.",
        cluster: (
            "1. My cluster will not start after the upgrade to version 24 this afternoon.\n"
            "2. Since this morning's upgrade to version 24, the cluster refuses to start.\n"
            "3. Since the upgrade to version 25 this morning, my cluster does not start."
        ),
        invoice: '["Where\'s my invoice? Mail joe@ex.io", "Lost."]',
    }

    def emails(texts: Any) -> list[set[str]]:
        import re

        return [{f"EMAIL_ADDRESS:{m}" for m in re.findall(r"\S+@\S+\.\w+", t)} for t in texts]

    # PII through the injection point (Presidio takes tens of seconds to build; its own tests cover it).
    conv = Conversation.from_dict({"messages": [{"role": "user", "content": invoice}]})
    pp = ag.plan([ag.Parent("p", 1, "p", conv)], ag.AugmentConfig(n=3), "scripted")[0]
    answer = ag.Completion((llm.answers[invoice],), ("stop",))
    first = ag.build_children(pp, [answer], ag.AugmentConfig(n=3), model="scripted", endpoint="h", pii=emails)
    assert [(r.variation, r.reason) for r in first.rejects] == [(0, "new_pii"), (1, "too_short"), (2, "missing")]
    assert first.rejects[0].details == {"entities": ["EMAIL_ADDRESS"]}

    r = wb.augment(n=3, **fast(llm))
    assert set(r.to_dict()) == {
        "parents",
        "requested",
        "generated",
        "kept",
        "rejected",
        "calls",
        "cached_calls",
        "run_id",
    }
    assert {k: v for k, v in r.to_dict().items() if k != "run_id"} == {
        "parents": 3, "requested": 9, "generated": 8, "kept": 3,
        "rejected": {"changed_facts": 1, "duplicate": 1, "identical": 1, "missing": 1, "near_identical": 1, "too_short": 1},
        "calls": 3, "cached_calls": 0,
    }  # fmt: skip
    # What the page shows for a run: every variation it did not keep, with its reason.
    rejects = wb.augment_rejects(r.run_id)
    assert sorted(x["reason"] for x in rejects) == sorted(r.rejected)
    assert all(x["parent_id"] for x in rejects) and any(x["text"] for x in rejects)
    assert r.kept + sum(r.rejected.values()) == r.requested
    fam = wb.augment_families()
    assert fam.total == 3
    parent_id = wb.list(text=book).conversations[0]["id"]
    family = wb.augment_family(parent_id)
    assert [c["messages"][1]["content"] for c in family.children] == ["Today I misplaced my book."]
    assert [(x["variation"], x["reason"], x["text"]) for x in family.rejects] == [
        (1, "identical", book),
        (2, "duplicate", "Today I misplaced my book."),
    ]
    child = wb.show(family.children[0]["id"])
    assert child.status == "pending" and child.family_id == wb.show(parent_id).family_id
    assert [m["content"] for m in child.messages] == ["Be kind.", "Today I misplaced my book.", "answer 0"]
    prov = child.provenance[0]
    assert {k: prov[k] for k in ("kind", "parent_id", "parent_revision", "model", "endpoint", "prompt_id")} == {
        "kind": "paraphrase", "parent_id": parent_id, "parent_revision": 1, "model": "scripted",
        "endpoint": f"127.0.0.1:{llm.server_port}", "prompt_id": "paraphrase-user-v1",
    }  # fmt: skip
    assert prov["prompt_sha256"] == ag.PROMPTS["paraphrase-user-v1"].sha256
    assert prov["parameters"] == {
        "max_tokens": 256,
        "n": 3,
        "seed": 0,
        "temperature": 0.7,
        "top_p": 0.95,
        "turns": "first",
        "variation": 0,
    }
    near, changed = wb.augment_family(wb.list(text="version 24").conversations[0]["id"]).rejects
    assert near["reason"] == "near_identical" and near["details"]["jaccard"] >= 0.8
    assert (changed["reason"], changed["details"]) == ("changed_facts", {"missing": ["24"], "added": ["25"]})

    # A second run pays nothing and adds nothing.
    before = wb.stats().conversations
    again = wb.augment(n=3, **fast(llm))
    assert again == replace(r, calls=0, cached_calls=3, run_id=again.run_id) and again.run_id != r.run_id
    assert llm.chats == 3 and wb.stats().conversations == before == 3 + 3
    # Children are never parents.
    assert wb.augment(n=3, dry_run=True, **fast(llm)).parents == 3


def test_truncated_and_unparseable_answers(wb, llm: Scripted) -> None:
    llm.finish = "length"
    llm.answers = {TEXTS[0]: "1. Today I misplaced my book.\n2. Today my bo", TEXTS[1]: "Here you go:", TEXTS[2]: ""}
    r = wb.augment(n=2, **fast(llm))
    assert r.rejected == {"truncated": 1, "unparseable": 4} and r.kept == 1 and r.generated == 2


def test_dry_run_calls_nothing_and_writes_nothing(wb, llm: Scripted) -> None:
    before = wb.store.logical_dump()
    r = wb.augment(n=2, limit=2, dry_run=True, **fast(llm))
    assert r.parents == 2 and r.calls == 2 and r.cached_calls == 0 and r.generated == 0
    assert r.estimated_tokens["completion_max"] == 2 * 256 and r.estimated_tokens["prompt"] > 50
    assert llm.chats == 0 and wb.store.logical_dump() == before


def test_concurrency_limit(wb, llm: Scripted, tmp_path: Path) -> None:
    llm.default, llm.delay = "slow", 0.3
    more = [
        {
            "messages": [
                {"role": "user", "content": f"question number {i} about my book"},
                {"role": "assistant", "content": "a"},
            ]
        }
        for i in range(5)
    ]
    wb.import_files([write(tmp_path / "more.jsonl", "\n".join(json.dumps(x) for x in more))])
    r = wb.augment(n=2, concurrency=2, **fast(llm))
    assert r.calls == 8 and llm.max_inflight == 2


# ---------------------------------------------------------------------------------- failures


def test_stopped_server(wb, llm: Scripted) -> None:
    url = llm.url
    llm.stop()
    with pytest.raises(LLMError) as e:
        wb.augment(n=2, max_retries=1, **fast(llm))
    assert str(e.value) == (
        f"cannot reach the LLM endpoint {url} (connection refused; 2 attempts); is the server running? "
        "`sift serve-llm` starts the embedded one — 0 of 3 parents done and saved, 3 left; run again to resume "
        "(answers already received are cached)"
    )


def test_unauthorized_with_and_without_key(wb, llm: Scripted, monkeypatch) -> None:
    llm.default = "401"
    monkeypatch.delenv("SIFT_LLM_API_KEY", raising=False)
    with pytest.raises(LLMError, match=r"needs an API key \(HTTP 401\): put it in \$SIFT_LLM_API_KEY — 0 of 3"):
        wb.augment(n=1, concurrency=1, **fast(llm))
    assert llm.chats == 1  # a 401 is not retried
    monkeypatch.setenv("SIFT_LLM_API_KEY", SECRET)
    with pytest.raises(LLMError) as e:
        wb.augment(n=1, concurrency=1, **fast(llm))
    assert str(e.value).startswith(
        f"the LLM endpoint {llm.url} rejected the API key from $SIFT_LLM_API_KEY (HTTP 401) — "
    )
    assert SECRET not in str(e.value) and llm.auth[-1] == f"Bearer {SECRET}"


def test_rate_limit_retries_then_gives_up(wb, llm: Scripted) -> None:
    llm.script = ["429", "429"]  # then ok: two retries absorb it
    r = wb.augment(n=2, limit=1, max_retries=2, **fast(llm))
    assert r.calls == 1 and llm.chats == 3
    llm.default = "429"
    with pytest.raises(LLMError) as e:
        wb.augment(n=2, max_retries=2, concurrency=1, **fast(llm))
    assert str(e.value).startswith(
        f"the LLM endpoint {llm.url} kept rate-limiting (HTTP 429, 3 attempts); try again later or lower the "
        "concurrency — 1 of 3 parents done and saved, 2 left"
    )


def test_server_error_keeps_done_work_and_rerun_resumes(wb, llm: Scripted) -> None:
    llm.script = ["ok", "500", "500"]
    with pytest.raises(LLMError) as e:
        wb.augment(n=2, max_retries=1, concurrency=1, **fast(llm))
    assert str(e.value) == (
        f"the LLM endpoint {llm.url} failed with HTTP 500 (2 attempts): boom — 1 of 3 parents done and saved, "
        "2 left; run again to resume (answers already received are cached)"
    )
    assert wb.augment_families().total == 1
    runs = wb.store.stage_runs("augment")
    assert runs[-1]["stats"]["error"].startswith("the LLM endpoint") and runs[-1]["finished_at"]
    r = wb.augment(n=2, max_retries=1, concurrency=1, **fast(llm))
    assert (r.calls, r.cached_calls, r.parents) == (2, 1, 3)
    assert wb.stats().conversations == 3 + r.kept  # nothing twice


def test_timeout_and_garbage(wb, llm: Scripted) -> None:
    llm.default, llm.delay = "slow", 1.0
    with pytest.raises(LLMError) as e:
        wb.augment(n=1, limit=1, timeout_s=0.3, max_retries=0, **fast(llm))
    assert str(e.value).startswith(
        f"the LLM endpoint {llm.url} did not answer within 0.3 s (1 attempt); raise the timeout or lower max_tokens — "
    )
    llm.default = "garbage"
    with pytest.raises(LLMError) as e:
        wb.augment(n=1, limit=1, **fast(llm))
    assert str(e.value).startswith(
        f"the LLM endpoint {llm.url} answered with something that is not an OpenAI chat completion: "
        "'<html><body>Welcome to nginx!</body></html>' — 0 of 1 parents done"
    )


def test_cli_contract_errors_and_the_key_never_stored(wb, llm: Scripted) -> None:
    env = {"SIFT_LLM_API_KEY": SECRET}
    args = ("augment", "--endpoint", llm.url, "--n", "2", "--no-pii-check")
    r = run_sift(*args, "--limit", "2", "--json", store=wb.path, env=env, check=True)
    out = json.loads(r.stdout)
    assert list(out) == ["parents", "requested", "generated", "kept", "rejected", "calls", "cached_calls", "run_id"]
    assert (out["parents"], out["requested"], out["calls"]) == (2, 4, 2)
    assert llm.auth == [f"Bearer {SECRET}"] * 2
    llm.default = "401"
    bad = run_sift(*args, "--retries", "0", store=wb.path, env=env)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith(f"error: the LLM endpoint {llm.url} rejected the API key from $SIFT_LLM_API_KEY")
    assert bad.stderr.rstrip().endswith(
        "2 of 3 parents done and saved, 1 left; run again to resume (answers already received are cached)"
    )
    for text in (r.stdout, r.stderr, bad.stdout, bad.stderr):
        assert SECRET not in text
    data = b"".join(p.read_bytes() for p in wb.path.parent.glob(wb.path.name + "*"))
    assert SECRET.encode() not in data and b"SIFT_LLM_API_KEY" in data  # the variable's name is, its value not
    assert SECRET not in repr(wb.store.logical_dump())


# ---------------------------------------------------------------------------------- the embedded endpoint


def _tiny_adapter(path: Path) -> Path:
    """A random LoRA adapter (r=2 on every q_proj) for the embedded model, in peft's file format,
    written with numpy so the test process needs no torch."""
    import numpy as np
    from safetensors.numpy import save_file

    from curation.models import resolve_model

    cfg = json.loads((Path(resolve_model()) / "config.json").read_text())
    hidden, out = cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"]
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(cfg["num_hidden_layers"]):
        key = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.1, (2, hidden)).astype(np.float32)
        tensors[f"{key}.lora_B.weight"] = rng.normal(0, 0.5, (out, 2)).astype(np.float32)
    path.mkdir(parents=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 64, "lora_dropout": 0.0,
        "target_modules": ["q_proj"], "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "base_model_name_or_path": resolve_model(),
    }  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="session")
def embedded(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """`sift serve-llm` with an adapter, on a free port, ready when /v1/models answers."""
    tmp = tmp_path_factory.mktemp("serve")
    adapter = _tiny_adapter(tmp / "run-7" / "adapter")
    port = free_port()
    log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed at teardown
    env = {**os.environ, "SIFT_LLM_API_KEY": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve-llm", "--port", str(port), "--adapter", str(adapter), "--json"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 240
    while True:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as resp:
                models = [m["id"] for m in json.loads(resp.read())["data"]]
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError((tmp / "serve.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield {"url": url, "models": models, "log": tmp / "serve.log", "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_embedded_server_speaks_openai(embedded: dict[str, Any]) -> None:
    import openai

    client = openai.OpenAI(base_url=embedded["url"], api_key=SECRET, max_retries=0, timeout=120)
    base, tuned = "smollm2-135m-instruct", "smollm2-135m-instruct+run-7"
    assert [m.id for m in client.models.list().data] == [base, tuned]
    msgs = [{"role": "user", "content": "Name a colour."}]
    a = client.chat.completions.create(model=base, messages=msgs, max_tokens=5, n=2, seed=7, temperature=0.9)
    b = client.chat.completions.create(model=base, messages=msgs, max_tokens=5, n=2, seed=7, temperature=0.9)
    assert len(a.choices) == 2 and [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert a.usage.prompt_tokens > 5 and a.usage.completion_tokens <= 10
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens
    assert all(c.finish_reason in ("stop", "length") for c in a.choices)
    g_base = client.chat.completions.create(model=base, messages=msgs, max_tokens=4, temperature=0)
    g_tuned = client.chat.completions.create(model=tuned, messages=msgs, max_tokens=4, temperature=0)
    assert g_base.choices[0].message.content != g_tuned.choices[0].message.content  # the adapter is applied
    stopped = client.chat.completions.create(model=base, messages=msgs, max_tokens=6, temperature=0, stop=[" "])
    assert " " not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"
    with pytest.raises(openai.NotFoundError, match="model 'gpt-4' is not served here"):
        client.chat.completions.create(model="gpt-4", messages=msgs, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="invalid request: n"):
        client.chat.completions.create(model=base, messages=msgs, max_tokens=2, n=0)


def test_embedded_server_drops_requests_whose_client_left(embedded: dict[str, Any]) -> None:
    import openai

    root = embedded["url"].removesuffix("/v1")

    def dropped() -> int:
        with urllib.request.urlopen(root + "/health", timeout=5) as resp:
            return int(json.loads(resp.read())["dropped"])

    before = dropped()
    # Two long requests whose client gives up after 0.3 s: one generating, one waiting for the model.
    impatient = openai.OpenAI(base_url=embedded["url"], api_key=SECRET, max_retries=0, timeout=0.3)
    msgs = [{"role": "user", "content": "Tell a very long story about a lighthouse keeper."}]
    for _ in range(2):
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(
                model="smollm2-135m-instruct", messages=msgs, max_tokens=1500, temperature=0.8
            )
    deadline = time.monotonic() + 60
    while dropped() < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dropped() == before + 2
    # The model is free again: a short request is answered.
    client = openai.OpenAI(base_url=embedded["url"], api_key=SECRET, max_retries=0, timeout=120)
    r = client.chat.completions.create(model="smollm2-135m-instruct", messages=msgs, max_tokens=3, temperature=0)
    assert r.choices[0].message.content


def test_sift_augment_with_the_embedded_server(embedded: dict[str, Any], tmp_path: Path) -> None:
    wb = workbench.open(tmp_path / "e.duckdb")
    rows = [
        {"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]}
        for t in ("I lost my book today.", "I am hungry.")
    ]
    wb.import_files([write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in rows))])
    args = (
        "augment",
        "--endpoint",
        embedded["url"],
        "--n",
        "2",
        "--limit",
        "2",
        "--max-tokens",
        "24",
        "--no-pii-check",
        "--json",
    )
    first = json.loads(run_sift(*args, store=wb.path, env={"SIFT_LLM_API_KEY": SECRET}, check=True).stdout)
    assert (first["parents"], first["requested"], first["calls"], first["cached_calls"]) == (2, 4, 2, 0)
    assert first["kept"] + sum(first["rejected"].values()) == 4
    second = wb.augment(endpoint=embedded["url"], n=2, limit=2, max_tokens=24, check_pii=False)
    assert second.to_dict() == {**first, "calls": 0, "cached_calls": 2, "run_id": second.run_id}
    assert wb.stats().conversations == 2 + first["kept"]
    for fam in wb.augment_families().parents:
        for c in fam.children:
            p = c["provenance"]
            assert (p["kind"], p["model"], p["parent_id"], p["endpoint"]) == (
                "paraphrase", "smollm2-135m-instruct", fam.id, endpoint_host(embedded["url"]),
            )  # fmt: skip
    assert SECRET.encode() not in wb.path.read_bytes()
    assert SECRET not in embedded["log"].read_text()


# ---------------------------------------------------------------------------------- the page


def test_augment_page_preview_run_and_review(wb, llm: Scripted, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SIFT_STORE", str(wb.path))
    monkeypatch.setenv("SIFT_REVIEWERS", str(wb.path.parent / "no-reviewers.toml"))
    monkeypatch.setenv("SIFT_LLM_ENDPOINT", llm.url)
    monkeypatch.setenv("SIFT_LLM_MODEL", "scripted")
    monkeypatch.setenv("SIFT_LLM_API_KEY", SECRET)
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "augment.py"), default_timeout=60)
    at.session_state["reviewer"] = "ana"
    at.run()
    assert not at.exception
    # The page picks among configured endpoints; it never names the key's variable or says if it is set.
    assert at.selectbox(key="aug_endpoint_name").options == [f"default ({endpoint_host(llm.url)})"]
    assert at.selectbox(key="aug_endpoint_name").value == "default"
    assert at.text_input(key="aug_model").value == "scripted"
    shown = " ".join(str(x.value) for x in [*at.caption, *at.text_input, *at.markdown, *at.info])
    assert SECRET not in shown and "SIFT_LLM_API_KEY" not in shown and "not set" not in shown
    at.checkbox(key="aug_pii").uncheck()
    at.number_input(key="aug_n").set_value(2)
    at.number_input(key="aug_preview_rows").set_value(3)
    at.number_input(key="aug_timeout").set_value(30.0)
    at.button[2].click().run()  # preview
    assert not at.exception and llm.chats == 3 and wb.stats().conversations == 3
    assert at.dataframe[0].value.shape[0] == 2
    at.button[3].click().run()  # run: answered from the cache
    assert not at.exception and llm.chats == 3
    assert any("6 of 6 variations kept" in s.value and "3 from the cache" in s.value for s in at.success)
    child = wb.augment_families().parents[0].children[0]["id"]
    at.button(key=f"aug_accept_{child}").click().run()
    assert not at.exception and wb.show(child).status == "accepted"
    # A slow endpoint: the preview fails with an error that points at the page's own settings.
    llm.default, llm.delay = "slow", 1.5
    at.number_input(key="aug_n").set_value(3)
    at.number_input(key="aug_timeout").set_value(1.0)
    at.number_input(key="aug_retries").set_value(0)
    at.button(key="aug_preview_button").click().run()
    assert not at.exception
    assert any(
        "did not answer within 1 s" in e.value and "Timeout and Max tokens are above" in e.value for e in at.error
    )
