"""Training runs: launch the trainer on a frozen version, follow it, cancel it, ingest and compare.

The trainer is a separate process that reads only an exported version (manifest + files) and
writes a run folder; this service exports the version into the run folder, launches the trainer
in the background, and ingests the folder's results into the store once the run ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.errors import StageError
from trainer.config import TrainConfig, estimate_vram_gib, load_config
from workbench import jobs
from workbench.services.core import default_actor
from workbench.services.results import Result, optional
from workbench.store import Store, StoreError
from workbench.store.runs import FINAL_STATES

# Metrics shown per run (`sift runs`, the Compare page), in this order.
GEN_METRICS = ("exact_match", "token_f1", "rouge_l", "json_valid", "json_field_accuracy", "json_exact")


def runs_root(store_path: Path) -> Path:
    """Run folders live beside the store: `$SIFT_RUNS`, else `<store dir>/runs`."""
    env = os.environ.get("SIFT_RUNS")
    return Path(env) if env else store_path.resolve().parent / "runs"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def metrics_of(eval_result: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any]:
    """The summary `sift runs` shows: eval loss and perplexity, train figures, base/tuned generation metrics."""
    summary = status.get("summary") or (eval_result or {}).get("train") or {}
    out: dict[str, Any] = {
        "eval_loss": None,
        "perplexity": None,
        "train_loss": summary.get("train_loss"),
        "tokens_per_s": summary.get("tokens_per_s"),
        "steps": summary.get("steps"),
    }
    if "peak_mem_gib" in summary:
        out["peak_mem_gib"] = summary["peak_mem_gib"]
    if eval_result:
        out["eval_loss"] = eval_result.get("eval_loss")
        out["perplexity"] = eval_result.get("perplexity")
        for side in ("base", "tuned"):
            if side in eval_result:
                out[side] = eval_result[side]
        if eval_result.get("judge"):
            out["judge_win_rate"] = eval_result["judge"].get("win_rate")
        if eval_result.get("tool_calls"):  # name exact, arguments JSON-equal, per-argument accuracy
            out["tool_calls"] = eval_result["tool_calls"]
        extra = eval_result.get("extra_eval")
        if extra:  # the same metrics on another version's eval split (e.g. a shared gold set)
            out["extra_eval"] = {k: extra.get(k) for k in ("version", "eval_loss", "n_generated", "base", "tuned")}
        out.update(ship_metrics(eval_result))
    return out


def ship_metrics(eval_result: dict[str, Any]) -> dict[str, Any]:
    """Issue 20's results: the gate, forgetting, memorisation and the checkpoint harness's curve."""
    out: dict[str, Any] = {}
    for key in ("gate", "forgetting", "memorization"):
        if eval_result.get(key) is not None:
            out[key] = eval_result[key]
    ck = eval_result.get("checkpoints") or {}
    if ck.get("evaluated"):
        out["checkpoints"] = [
            {"step": c.get("step"), "checkpoint": c.get("checkpoint"), "eval_loss": c.get("eval_loss"),
             **{k: v for k, v in (c.get("tuned") or {}).items() if k in GEN_METRICS}}
            for c in ck["evaluated"]
        ]  # fmt: skip
        out["best_checkpoint"] = ck.get("best")
    return out


@dataclass(frozen=True)
class RunState(Result):
    """`sift train --json` / `sift wait --json`: a run and where it stands."""

    run_id: str
    out_dir: str
    state: str | None


@dataclass(frozen=True)
class RunList(Result):
    """`sift runs --json`: `{"gate", "forgetting", "memorization", "checkpoints", "best_checkpoint",
    "sweep", "recipe", "run_id", "version", "state", "metrics", ...}` each, live runs refreshed."""

    runs: list[dict[str, Any]]


@dataclass(frozen=True)
class RunDetail(Result):
    """One run (the store's row) with its live view from the folder: status, loss curve, log tail
    (`to_dict()` is the row with those three keys set)."""

    run: dict[str, Any]
    status: dict[str, Any] | None
    curve: list[dict[str, Any]]
    log_tail: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.run, "status": self.status, "curve": self.curve, "log_tail": self.log_tail}


@dataclass(frozen=True)
class CancelRequest(Result):
    run_id: str
    state: str | None
    cancel_requested: bool


@dataclass(frozen=True)
class ImportedRun(Result):
    """`sift import-run --json` (one per folder): the new run id and where its copy lives."""

    run_id: str
    version: str
    state: str
    source: str
    out_dir: str


@dataclass(frozen=True)
class RunComparison(Result):
    """`sift compare --json`: `runs` (run_id, version, state, base_model, config, metrics), the
    metric names, and per eval example `{"index", "prompt", "reference", "base", "tuned": {run:
    answer}, "scores": {run: {"base", "tuned"}}, "regressed_in": [run]}`."""

    runs: list[dict[str, Any]]
    versions: list[str]
    metrics: list[str]
    examples: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class AdapterExport(Result):
    """`sift export-adapter --json`: where it went, whether merged (`full_model` for a full
    fine-tune, `base_model` when merged), the files, the gate and whether it was forced."""

    run_id: str
    out_dir: str
    merged: bool
    full_model: bool | None = optional()
    base_model: str | None = optional()
    files: list[str]
    gate: dict[str, Any] | None
    forced: bool


@dataclass(frozen=True)
class VramEstimate(Result):
    """Rough peak GPU memory of a config, GiB per part and in total."""

    weights: float
    lora_and_optimizer: float
    activations: float
    logits: float
    total: float


class TrainService:
    store: Store
    path: Path

    # ------------------------------------------------------------------ launch

    def train(
        self,
        version: str,
        *,
        config_file: str | Path | None = None,
        config: dict[str, Any] | None = None,
        max_steps: int | None = None,
        eval_limit: int | None = None,
        base_model: str | None = None,
        gpus: int | None = None,
        cpu_processes: int | None = None,
        strategy: str | None = None,
        wait: bool = False,
        actor: str | None = None,
        env: dict[str, str] | None = None,
        launch: bool = True,
        sweep: dict[str, Any] | None = None,
    ) -> RunState:
        """Export `version` into a new run folder and start the trainer on it.

        `launch=False` leaves the run queued for a sweep's driver (`sweep` is stored with its config).

        `version` is a frozen version's name, or the path of an export folder / its manifest.json
        (a version exported elsewhere). `gpus=N` trains on N GPUs, `cpu_processes=N` in N CPU
        processes (gloo), both through `accelerate launch` with `strategy` (ddp, fsdp,
        deepspeed-zero2, deepspeed-zero3); combinations that cannot run are refused before anything
        is written. Returns {"run_id", "out_dir", "state"}.
        """
        from trainer import distributed

        if gpus is not None and cpu_processes is not None:
            raise StageError("--gpus and --cpu-processes exclude each other: GPUs, or CPU processes")
        overrides = dict(config or {})
        for k, v in (
            ("max_steps", max_steps),
            ("eval_limit", eval_limit),
            ("base_model", base_model),
            ("strategy", strategy),
        ):
            if v is not None:
                overrides[k] = v
        for n, device in ((gpus, "cuda"), (cpu_processes, "cpu")):
            if n is not None:
                if n < 1:
                    raise StageError(f"--{'gpus' if device == 'cuda' else 'cpu-processes'} must be at least 1, got {n}")
                overrides.update(num_processes=n, device=device)
        cfg = load_config(config_file, **overrides)
        plan = distributed.plan(cfg)
        run_id = new_run_id()
        out_dir = runs_root(self.path) / run_id
        manifest_path, version_name, manifest_sha = self._export_for_run(version, out_dir / "export")
        if cfg.extra_eval:  # a version name or an export folder; the run keeps its own copy, as of its train data
            extra_manifest, _, _ = self._export_for_run(cfg.extra_eval, out_dir / "extra_eval")
            cfg = cfg.override(extra_eval=str(extra_manifest.parent))
        from trainer.forgetting import BUILTIN

        for key in ("mix_version", "generic_eval"):  # the forgetting guard's versions, copied like extra_eval
            spec = getattr(cfg, key)
            if spec and spec != BUILTIN:
                other, _, _ = self._export_for_run(spec, out_dir / key)
                cfg = cfg.override(**{key: str(other.parent)})
        if hasattr(self, "_write_pii_strings") and not Path(version).exists():
            self._write_pii_strings(version_name, out_dir)
        config_path = out_dir / "config.input.json"
        config_path.write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
        self.store.create_run(
            run_id,
            version=version_name,
            manifest_sha256=manifest_sha,
            out_dir=str(out_dir),
            config={**cfg.to_dict(), **({"sweep": sweep} if sweep else {})},
            actor=actor or default_actor(),
        )
        jobs.write_queued(out_dir, run_id)
        if not launch:
            return RunState(run_id=run_id, out_dir=str(out_dir), state="queued")
        accelerate_config = None
        if plan.distributed:
            accelerate_config = distributed.write_accelerate_config(out_dir / "accelerate.yaml", plan, cfg)
            env = {**distributed.launch_env(plan), **(env or {})}
        try:
            proc = jobs.launch(manifest_path, config_path, out_dir, env=env, accelerate_config=accelerate_config)
        except OSError as e:
            self.store.update_run(run_id, state="failed", error=f"cannot start the trainer: {e}")
            raise StoreError(f"cannot start the trainer: {e}") from None
        self.store.update_run(run_id, pid=proc.pid)
        state = "queued"
        if wait:
            status = jobs.wait(out_dir, proc.pid, proc=proc)
            self._ingest(run_id, out_dir, status)
            state = status["state"]
        return RunState(run_id=run_id, out_dir=str(out_dir), state=state)

    def _export_for_run(self, version: str, export_dir: Path) -> tuple[Path, str, str | None]:
        given = Path(version)
        if given.exists():
            manifest = given / "manifest.json" if given.is_dir() else given
            if not manifest.exists():
                raise StageError(f"{given} holds no manifest.json")
            m = json.loads(manifest.read_text(encoding="utf-8"))
            name = m.get("name") or (m.get("version") if isinstance(m.get("version"), str) else given.name)
            # The run keeps its own copy: the trainer must read what the run names, even if the source moves.
            shutil.copytree(manifest.parent, export_dir)
            return export_dir / "manifest.json", str(name), m.get("manifest_sha256")
        if not hasattr(self, "export_version"):
            raise StageError(
                f"cannot export version {version!r}: this Sift has no versions step (sift freeze/export); "
                "pass the path of an exported version's folder instead"
            )
        r = self.export_version(version, "openai", export_dir)
        return export_dir / "manifest.json", version, r.manifest_sha256  # an ExportReport

    # ------------------------------------------------------------------ follow

    def refresh_runs(self) -> int:
        """Bring live runs up to date from their folders; ingest those that ended. Returns how many changed."""
        changed = 0
        for r in self.store.list_runs(states=("queued", "running")):
            out_dir = Path(r["out_dir"])
            status = jobs.read_status(out_dir, r["pid"])
            if status.get("state") in FINAL_STATES:
                self._ingest(r["run_id"], out_dir, status)
                changed += 1
            elif status.get("state") != r["state"] or status.get("step") != r["step"]:
                self.store.update_run(
                    r["run_id"],
                    state=status.get("state", r["state"]),
                    step=status.get("step"),
                    total_steps=status.get("total"),
                    message=status.get("message"),
                    backend=status.get("backend"),
                )
                changed += 1
        return changed

    def _ingest(self, run_id: str, out_dir: Path, status: dict[str, Any], *, con: Any = None) -> None:
        folder = jobs.read_run_folder(out_dir)
        status = {**folder["status"], **status}
        if not status.get("log_tail"):  # only a failure writes one: keep a cancelled run's too
            status["log_tail"] = folder["log_tail"]
        eval_result = folder["eval"] if status.get("state") == "succeeded" else None
        metrics = metrics_of(eval_result, status)
        row = self.store.get_run(run_id) if con is None else None
        if eval_result is not None and row is not None and hasattr(self, "_gate_for"):
            # the gate against the reference the config names (a production run: its stored answers)
            try:
                metrics["gate"] = self._gate_for(row, folder["samples"], eval_result)
            except (StoreError, StageError) as e:  # e.g. the production run named is not in this store
                cfg = row.get("config") or {}
                metrics["gate"] = {
                    "verdict": "hold", "regressed": None, "cases": 0, "threshold": cfg.get("gate_threshold"),
                    "against": cfg.get("gate_against"), "regressed_cases": [], "reason": str(e),
                }  # fmt: skip
        self.store.ingest_run(
            run_id,
            status=status,
            metrics=metrics,
            eval_result=eval_result,
            curve=folder["curve"],
            samples=folder["samples"],
            started_at=_ts(status.get("started_at")),
            finished_at=_ts(status.get("finished_at")),
            con=con,
        )

    def runs(self, *, version: str | None = None) -> RunList:
        """Every run (of `version`), live runs refreshed first."""
        self.refresh_runs()
        out = []
        listed = self.store.list_runs(version=version)
        if hasattr(self, "mark_sweeps"):
            self.mark_sweeps(listed)
        for r in listed:
            m = r["metrics"] or {}
            out.append(
                {
                    # issue 20: gate, forgetting guard, memorisation probe, checkpoints, sweep group
                    "gate": ship_gate(m),
                    "forgetting": m.get("forgetting"),
                    "memorization": _memorization(m),
                    "checkpoints": m.get("checkpoints"),
                    "best_checkpoint": m.get("best_checkpoint"),
                    "sweep": r.get("sweep"),
                    "recipe": recipe_label(r.get("config") or {}),
                    "run_id": r["run_id"],
                    "version": r["version"],
                    "state": r["state"],
                    "metrics": r["metrics"],
                    "base_model": r["base_model"],
                    "backend": r["backend"],
                    "step": r["step"],
                    "total_steps": r["total_steps"],
                    "out_dir": r["out_dir"],
                    "created_at": r["created_at"],
                    "finished_at": r["finished_at"],
                    "error": r["error"],
                    "hint": r["hint"],
                }
            )
        return RunList(out)

    def run_detail(self, run_id: str) -> RunDetail:
        """One run with its live view: status, loss curve and log tail read from the folder."""
        self.refresh_runs()
        r = self.store.get_run(run_id)
        folder = jobs.read_run_folder(Path(r["out_dir"]))
        live = r["state"] not in FINAL_STATES
        return RunDetail(
            run=r,
            status=folder["status"],
            curve=folder["curve"] if live or not r["ingested_at"] else self.store.run_curve(r["run_id"]),
            log_tail=folder["log_tail"] or r["log_tail"],
        )

    def wait_run(self, run_id: str, *, timeout_s: float | None = None) -> RunState:
        r = self.store.get_run(run_id)
        status = jobs.wait(Path(r["out_dir"]), r["pid"], timeout_s=timeout_s)
        if status.get("state") in FINAL_STATES:
            self._ingest(r["run_id"], Path(r["out_dir"]), status)
        return RunState(run_id=r["run_id"], out_dir=r["out_dir"], state=status.get("state"))

    def cancel_run(self, run_id: str) -> CancelRequest:
        """Ask a run to stop; it saves its adapter and ends `cancelled`."""
        r = self.store.get_run(run_id)
        if r["state"] in FINAL_STATES:
            raise StoreError(f"run {r['run_id']} already ended ({r['state']})")
        status = jobs.cancel(Path(r["out_dir"]), r["pid"])
        if status.get("state") in FINAL_STATES:
            self._ingest(r["run_id"], Path(r["out_dir"]), status)
        return CancelRequest(
            run_id=r["run_id"],
            state=status.get("state"),
            cancel_requested=status.get("state") not in FINAL_STATES,
        )

    # ------------------------------------------------------------------ runs trained elsewhere

    def import_run(self, run_dir: str | Path, *, actor: str | None = None) -> ImportedRun:
        """Register a run folder that `python -m trainer` wrote on another machine (a GPU box, say).

        The folder must hold an ended run (status.json) and the config.json that names the version it
        trained on; that version must be frozen in this store with the same manifest hash, so its
        results are shown against the data it really saw. The folder is copied under the store's runs
        root (the source is left as it was) and ingested in one transaction; importing the same folder
        twice is refused.
        """
        src = Path(run_dir)
        if not src.is_dir():
            raise StageError(f"{src}: not a folder (give the run folder `python -m trainer --out` wrote)")
        status = jobs.read_json(src / "status.json")
        if not isinstance(status, dict) or "state" not in status:
            raise StageError(f"{src / 'status.json'}: missing or unreadable (field 'state'): is this a run folder?")
        if status["state"] not in FINAL_STATES:
            raise StageError(
                f"{src / 'status.json'}: field 'state' is {status['state']!r}: only an ended run can be imported"
            )
        cfg_file = jobs.read_json(src / "config.json")
        manifest = (cfg_file or {}).get("manifest") if isinstance(cfg_file, dict) else None
        if not isinstance(manifest, dict) or not manifest.get("version") or not manifest.get("manifest_sha256"):
            raise StageError(
                f"{src / 'config.json'}: missing or unreadable (field 'manifest.version' / 'manifest.manifest_sha256')"
            )
        version, sha = str(manifest["version"]), str(manifest["manifest_sha256"])
        try:
            known = self.store.get_version(version)
        except (AttributeError, StoreError):
            raise StageError(
                f"{src}: trained on version {version!r}, which is not frozen in this store: freeze or import it first"
            ) from None
        if known["manifest_sha256"] != sha:
            raise StageError(
                f"{src / 'config.json'}: field 'manifest.manifest_sha256' is {sha[:12]}…, but this store's version "
                f"{version!r} is {known['manifest_sha256'][:12]}…: the run trained on other data"
            )
        fingerprint = _folder_fingerprint(src)
        for r in self.store.list_runs(version=version):
            if ((r["config"] or {}).get("imported") or {}).get("fingerprint") == fingerprint:
                raise StageError(f"{src}: already imported as run {r['run_id']}")
        run_id = new_run_id()
        out_dir = runs_root(self.path) / run_id
        tmp = out_dir.with_name(f".{run_id}.importing")
        shutil.copytree(src, tmp)
        os.replace(tmp, out_dir)
        config = dict(cfg_file.get("config") or {})
        config["imported"] = {
            "source": str(src.resolve()),
            "fingerprint": fingerprint,
            "host": cfg_file.get("host"),
            "libraries": cfg_file.get("libraries"),
        }
        try:
            with self.store.db.transaction() as tx:  # the run's row and its results land together
                self.store.create_run(
                    run_id, version=version, manifest_sha256=sha, out_dir=str(out_dir), config=config,
                    actor=actor or default_actor(), con=tx,
                )  # fmt: skip
                self._ingest(run_id, out_dir, status, con=tx)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        return ImportedRun(run_id=run_id, version=version, state=status["state"], source=str(src), out_dir=str(out_dir))

    # ------------------------------------------------------------------ compare

    def compare_runs(self, run_ids: list[str], *, regressions_only: bool = False) -> RunComparison:
        """Metrics side by side, and per eval example the reference, base and each run's answer.

        An example is a regression for a run when its tuned answer scores below the base answer
        (JSON field accuracy where the reference is JSON, else ROUGE-L).
        """
        if not run_ids:
            raise StoreError("compare needs at least one run")
        self.refresh_runs()
        runs = [self.store.get_run(r) for r in run_ids]
        table = []
        for r in runs:
            table.append(
                {
                    "run_id": r["run_id"],
                    "version": r["version"],
                    "state": r["state"],
                    "base_model": r["base_model"],
                    "config": {
                        k: (r["config"] or {}).get(k)
                        for k in (
                            "lora_r",
                            "lora_alpha",
                            "learning_rate",
                            "max_steps",
                            "num_train_epochs",
                            "max_seq_len",
                        )
                    },
                    "metrics": r["metrics"],
                }
            )
        examples: dict[int, dict[str, Any]] = {}
        for r in runs:
            for s in self.store.run_samples(r["run_id"]):
                ex = examples.setdefault(
                    s["index"],
                    {
                        "index": s["index"],
                        "prompt": s["prompt"],
                        "reference": s["reference"],
                        "base": s["base"],
                        "tuned": {},
                        "scores": {},
                        "regressed_in": [],
                    },
                )
                ex["tuned"][r["run_id"]] = s["tuned"]
                ex["scores"][r["run_id"]] = {"base": s["base_scores"], "tuned": s["tuned_scores"]}
                if s["base_scores"] is not None and _key_score(s["tuned_scores"]) < _key_score(s["base_scores"]):
                    ex["regressed_in"].append(r["run_id"])
        rows = [examples[k] for k in sorted(examples)]
        if regressions_only:
            rows = [e for e in rows if e["regressed_in"]]
        versions = sorted({r["version"] for r in runs})
        return RunComparison(
            runs=table, versions=versions, metrics=["eval_loss", "perplexity", *GEN_METRICS], examples=rows
        )

    # ------------------------------------------------------------------ export

    def export_adapter(
        self, run_id: str, out_dir: str | Path, *, merge: bool = False, force: bool = False
    ) -> AdapterExport:
        """Copy the run's adapter to `out_dir`, or write the base model with the adapter merged in, with
        a README.md model card. A run the regression gate holds (or never gated) is refused unless `force`."""
        r = self.store.get_run(run_id)
        adapter = Path(r["out_dir"]) / "adapter"
        full = (r["config"] or {}).get("lora") is False and (adapter / "config.json").exists()
        if not (adapter / "adapter_config.json").exists() and not full:
            raise StoreError(f"run {r['run_id']} has no saved adapter (state {r['state']})")
        gate = ship_gate(r["metrics"] or {})
        if not force and (gate or {}).get("verdict") != "ship":
            why = (
                f"the regression gate holds it: {gate['regressed']} of {gate['cases']} eval cases score lower than "
                f"{gate['against']} (threshold {gate['threshold']:.0%})"
                if gate
                else f"it has no regression gate verdict (state {r['state']}, not evaluated)"
            )
            raise StageError(f"run {r['run_id']} is not exported: {why}; pass --force to export it anyway")
        from trainer.export import export_adapter

        result = export_adapter(adapter, Path(out_dir), merge=merge, base_model=(r["config"] or {}).get("base_model"))
        if hasattr(self, "model_card"):
            card = self.model_card(
                r["run_id"], merged=result["merged"], forced=force and (gate or {}).get("verdict") != "ship"
            )
            (Path(out_dir) / "README.md").write_text(card, encoding="utf-8")
            result["files"] = sorted({*result["files"], "README.md"})
        return AdapterExport(run_id=r["run_id"], **result, gate=gate, forced=force)

    # ------------------------------------------------------------------ config helpers for the UI

    @staticmethod
    def train_config_fields() -> list[dict[str, Any]]:
        return TrainConfig.fields_help()

    @staticmethod
    def vram_estimate(config: dict[str, Any]) -> VramEstimate | None:
        """Rough peak GPU memory of a config, from the base model's config.json when it is local."""
        cfg = TrainConfig.from_dict(config)
        from curation.models import DEFAULT_MODEL, EMBEDDED, cache_dir

        name = cfg.base_model
        folder = cache_dir() / "models" / DEFAULT_MODEL if name in EMBEDDED else Path(name)
        try:
            model_config = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return VramEstimate(**estimate_vram_gib(cfg, model_config))


def ship_gate(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """`{"verdict", "regressed", "cases", "threshold", "against", "regressed_cases"}` of a run (or None)."""
    g = metrics.get("gate")
    if not g or "verdict" not in g:
        return None
    out = {k: g.get(k) for k in ("verdict", "regressed", "cases", "threshold", "against")}
    out["regressed_cases"] = g.get("regressed_cases") or []
    return out


def recipe_label(config: dict[str, Any]) -> str | None:
    """How a run trained, in a few words ("QLoRA r16, lr 0.0004, 150 steps"), so that a DoRA or full
    fine-tuning run of a version is never read as one more seed of its QLoRA runs."""
    if not config:
        return None
    if config.get("lora") is False:
        kind = "full fine-tuning (bf16)"
    else:
        four_bit = config.get("load_in_4bit", True)
        adapter = "DoRA" if config.get("use_dora") else "rsLoRA" if config.get("use_rslora") else "LoRA"
        kind = ("QLoRA" if four_bit else "LoRA") if adapter == "LoRA" else adapter + (" (4-bit)" if four_bit else "")
        if config.get("lora_r"):
            kind += f" r{config['lora_r']}"
    parts = [kind]
    if config.get("learning_rate") is not None:
        parts.append(f"lr {config['learning_rate']:g}")
    if config.get("max_steps"):
        parts.append(f"{config['max_steps']} steps")
    elif config.get("num_train_epochs"):
        parts.append(f"{config['num_train_epochs']:g} epochs")
    return ", ".join(parts)


def _memorization(metrics: dict[str, Any]) -> dict[str, Any] | None:
    m = metrics.get("memorization")
    if not m:
        return None
    return {k: m.get(k) for k in ("probed", "extracted_exact", "extracted_near", "pii_emitted", "base")}


def _key_score(scores: dict[str, Any] | None) -> float:
    if not scores:
        return 0.0
    if "json_field_accuracy" in scores:
        return float(scores["json_field_accuracy"])
    return float(scores.get("rouge_l", 0.0))


def _ts(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def _folder_fingerprint(folder: Path) -> str:
    """What identifies one run folder wherever it was copied: the hash of the files its results come from."""
    import hashlib

    h = hashlib.sha256()
    for name in ("status.json", "config.json", "eval.json", "metrics.jsonl"):
        p = folder / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()[:32]
