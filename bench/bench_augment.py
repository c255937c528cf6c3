"""Augmentation throughput against an endpoint with a fixed latency per call.

Baseline: what a plain script does, one `openai` call per parent in a loop (Sift's own run with
`concurrency=1`, so parsing, filtering and saving cost the same). Compared with it in the same run:
Sift with `concurrency=4`, and a re-run of the same parents, answered from the store's cache.
The endpoint is a local HTTP server that waits `SIFT_BENCH_AUGMENT_LATENCY` seconds (default 0.2)
before answering with three paraphrases, so the numbers measure Sift, not a model.

    .venv/bin/python bench/run.py bench_augment
    SIFT_BENCH_AUGMENT_N=100 .venv/bin/python bench/run.py bench_augment
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    latency = 0.2

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        time.sleep(self.latency)
        text = req["messages"][-1]["content"].split(": ", 1)[1]
        words = " ".join(reversed(text.split()))
        answer = f"1. Put simply, {words}\n2. {words} Thanks.\n3. To rephrase: {words}"
        body = json.dumps(
            {
                "id": "b", "object": "chat.completion", "created": 0, "model": req["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 60, "total_tokens": 160},
            }
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _store(folder: Path, n: int) -> Any:
    import workbench

    rows = [
        {"messages": [
            {"role": "user", "content": f"Ticket {i}: the nightly export job {i} fails with error {i * 7919 % 1000} since Monday."},
            {"role": "assistant", "content": "Please send the job id."},
        ]}
        for i in range(n)
    ]  # fmt: skip
    f = folder / f"rows{n}.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    wb = workbench.open(folder / f"bench-{time.monotonic_ns()}.duckdb")
    wb.import_files([f], actor="bench")
    return wb


def main() -> dict[str, Any]:
    n = int(os.environ.get("SIFT_BENCH_AUGMENT_N", "40"))
    _Handler.latency = float(os.environ.get("SIFT_BENCH_AUGMENT_LATENCY", "0.2"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = {
        "endpoint": f"http://127.0.0.1:{server.server_port}/v1", "model": "bench", "n": 3, "check_pii": False,
        "actor": "bench",
    }  # fmt: skip
    results: dict[str, Any] = {
        "parents": n,
        "latency_s": _Handler.latency,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timings = {}
        for name, kw in (
            ("baseline: one call at a time", {"concurrency": 1}),
            ("sift: concurrency 4", {"concurrency": 4}),
        ):
            wb = _store(folder, n)
            t = time.perf_counter()
            r = wb.augment(**opts, **kw)
            timings[name] = time.perf_counter() - t
            assert r.calls == n and r.kept == 3 * n, r
        t = time.perf_counter()
        again = wb.augment(**opts, concurrency=4)
        timings["sift: re-run from the cache"] = time.perf_counter() - t
        assert again.calls == 0 and again.cached_calls == n, again
    server.shutdown()
    server.server_close()
    base = timings["baseline: one call at a time"]
    print(f"{n} parents × 3 variations, endpoint latency {_Handler.latency:g} s per call; {results['machine']}\n")
    print("| run | seconds | parents/s | vs baseline |")
    print("|---|---|---|---|")
    for name, secs in timings.items():
        print(f"| {name} | {secs:.2f} | {n / secs:.1f} | {base / secs:.1f}x |")
        results[name] = {"seconds": round(secs, 3), "speedup": round(base / secs, 2)}
    return results


if __name__ == "__main__":
    main()
