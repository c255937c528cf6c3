"""The run folder: everything a run leaves behind, and the only channel back to the workbench.

    status.json     state (queued|running|succeeded|failed|cancelled), step, total, ETA, error, hint
    config.json     the whole config, the manifest's version and hash, library versions, device
    metrics.jsonl   one line per log: step, loss, lr, grad_norm, tokens_per_s (and eval_loss)
    train.log       the process's log
    adapter/        the LoRA adapter (+ tokenizer)
    eval.json       eval loss, perplexity, generation metrics for base and tuned
    samples.jsonl   per eval example: prompt, reference, base, tuned and their scores

status.json is replaced atomically (write, then rename), so a reader never sees half a file.
In a multi-process run (trainer/distributed.py) rank 0 alone writes the folder: the other ranks'
RunDir writes nothing and logs warnings and errors to stderr (the launcher's process.log).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")

HINTS = {
    "oom": (
        "out of memory: lower per_device_train_batch_size or max_seq_len, keep gradient_checkpointing on, "
        "or use load_in_4bit on CUDA"
    ),
    "import": "a training library is missing: pip install -e '.[train]' (and '.[cuda]' / '.[gpu]' on CUDA)",
    "killed": "the process died without a word (killed by a signal, often the system's out-of-memory killer)",
    "manifest": "re-export the version (sift export / sift train VERSION) so the files match their manifest",
}


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass  # a line being written right now
    except FileNotFoundError:
        pass
    return out


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64_000))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def classify_error(exc: BaseException, text: str = "") -> str | None:
    msg = f"{type(exc).__name__}: {exc}\n{text}".lower()
    # CUDA says "out of memory"; on CPU torch says "can't allocate memory" and a failed mmap
    # "Cannot allocate memory" (ENOMEM).
    if any(s in msg for s in ("out of memory", "outofmemory", "cannot allocate memory", "can't allocate memory")):
        return "oom"
    if isinstance(exc, MemoryError):
        return "oom"
    if isinstance(exc, ImportError):
        return "import"
    if "manifest" in msg:
        return "manifest"
    return None


class RunDir:
    """Writes a run folder's files; also the SIGTERM handler that asks training to stop."""

    def __init__(self, path: str | Path, *, rank: int = 0, world_size: int = 1) -> None:
        self.path = Path(path)
        self.rank, self.world_size = rank, world_size
        self.writer = rank == 0
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
        self.status_path = self.path / "status.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.log_path = self.path / "train.log"
        self.adapter_path = self.path / "adapter"
        self.stop_requested = False
        self._status: dict[str, Any] = (read_json(self.status_path) or {}) if self.writer else {}
        self._last_write = 0.0
        self.log = self._logger()

    def _logger(self) -> logging.Logger:
        log = logging.getLogger(f"sift.trainer.{self.path}")
        log.setLevel(logging.INFO)
        log.propagate = False
        if not self.writer and not log.handlers:
            sh = logging.StreamHandler()
            sh.setLevel(logging.WARNING)
            sh.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {self.rank}] %(message)s", "%H:%M:%S"))
            log.addHandler(sh)
        if not log.handlers:
            fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
            fh = logging.FileHandler(self.log_path, encoding="utf-8")
            fh.setFormatter(fmt)
            log.addHandler(fh)
            sh = logging.StreamHandler()
            sh.setFormatter(fmt)
            log.addHandler(sh)
        return log

    # ------------------------------------------------------------------ status

    def status(self, **changes: Any) -> dict[str, Any]:
        self._status.update(changes)
        if not self.writer:
            return self._status
        self._status["updated_at"] = utcnow()
        self._status.setdefault("pid", os.getpid())
        write_json_atomic(self.status_path, self._status)
        self._last_write = time.monotonic()
        return self._status

    def progress(self, step: int, total: int, started: float) -> None:
        """Step and ETA, written at most once a second."""
        if time.monotonic() - self._last_write < 1.0 and step < total:
            return
        elapsed = time.monotonic() - started
        eta = elapsed / step * (total - step) if step else None
        self.status(
            step=step, total=total, eta_s=round(eta, 1) if eta is not None else None, elapsed_s=round(elapsed, 1)
        )

    def metric(self, row: dict[str, Any]) -> None:
        if not self.writer:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=float) + "\n")

    def fail(self, exc: BaseException) -> None:
        kind = classify_error(exc)
        self.log.exception("run failed: %s", exc)
        if not self.writer:
            return
        tail, hint = log_tail(self.log_path), HINTS.get(kind or "", "see train.log")
        if self.world_size > 1:
            # Another rank may have failed first; its error went to the launcher's process.log.
            tail += "\n--- process.log (all ranks) ---\n" + log_tail(self.path / "process.log", 20)
            hint += "; in a multi-process run, process.log holds every rank's errors"
        self.status(
            state="failed",
            finished_at=utcnow(),
            error=f"{type(exc).__name__}: {exc}"[:2000],
            hint=hint,
            log_tail=tail,
        )

    # ------------------------------------------------------------------ cancel

    def install_signal_handlers(self) -> None:
        """SIGTERM (and SIGINT) ask training to stop at the next step; a second one exits at once."""

        def handler(signum: int, _frame: Any) -> None:
            if self.stop_requested:
                self.status(state="cancelled", finished_at=utcnow(), message="stopped at once (second signal)")
                os._exit(143)
            self.stop_requested = True
            self.log.info("signal %d: stopping after the current step, keeping what was saved", signum)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def write_json(self, name: str, obj: Any) -> None:
        if not self.writer:
            return
        write_json_atomic(self.path / name, obj)
