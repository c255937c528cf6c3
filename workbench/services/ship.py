"""What decides whether a run ships: the regression gate, sweeps, the model card, the PII strings
the memorisation probe looks for (issue 20).

- Gate: the trainer writes the gate against the base model into eval.json; a run whose config names
  a production run (`gate_against`) is gated against that run's stored answers at ingest, and
  `sift gate RUN --against RUN|base` recomputes it. `export_adapter` refuses a `hold` run unless forced.
- Sweep: `sift sweep VERSION --grid k=v1,v2 ...` registers one run per grid point (all queued, one
  sweep id in their stored config) and a driver process (`python -m workbench.sweep`) trains them one
  at a time; `runs()` marks each sweep's best run by the best_metric on the version's eval split.
"""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.errors import StageError
from trainer.config import TrainConfig
from trainer.gate import DEFAULT_THRESHOLD, against_base, against_run
from workbench.services.results import Result
from workbench.services.train import TrainService
from workbench.store import Store, StoreError

LOWER_IS_BETTER = ("eval_loss", "perplexity")


@dataclass(frozen=True)
class GateResult(Result):
    """`sift gate --json`: the run id, then the gate's own keys (verdict, against, cases, regressed,
    threshold… as `trainer.gate` writes them); only the run id when the run has no eval to gate."""

    run_id: str
    gate: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **(self.gate or {})}


@dataclass(frozen=True)
class SweepPlan(Result):
    """`sift sweep --json`: `runs` `{"run_id", "params", "out_dir"}` each, queued in order."""

    sweep_id: str
    version: str
    grid: dict[str, list[Any]]
    runs: list[dict[str, Any]]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`["learning_rate=1e-4,2e-4", "lora_r=8,16"]` → {field: [typed values]}, checked against TrainConfig."""
    defaults = TrainConfig()
    known = {f["name"] for f in TrainConfig.fields_help()}
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, vals = item.partition("=")
        key = key.strip()
        if not sep or not key or not vals.strip():
            raise StageError(f"--grid {item!r}: expected FIELD=V1,V2,...")
        if key not in known:
            raise StageError(f"--grid {item!r}: {key!r} is not a trainer config field")
        if key in grid:
            raise StageError(f"--grid {key!r} is given twice")
        want = type(getattr(defaults, key))
        typed: list[Any] = []
        for raw in vals.split(","):
            raw = raw.strip()
            try:
                if want is bool:
                    if raw.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(raw)
                    typed.append(raw.lower() in ("true", "1"))
                elif want in (int, float):
                    typed.append(want(float(raw)) if want is int and float(raw).is_integer() else want(raw))
                elif want is list:
                    typed.append([raw])
                else:
                    typed.append(raw)
            except ValueError:
                raise StageError(f"--grid {item!r}: {raw!r} is not a {want.__name__} for {key!r}") from None
        grid[key] = typed
    if not grid:
        raise StageError("a sweep needs at least one --grid FIELD=V1,V2")
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))]


class ShipService(TrainService):
    store: Store
    path: Path

    # ------------------------------------------------------------------ gate

    def _gate_for(self, run: dict[str, Any], samples: list[dict[str, Any]], eval_result: dict[str, Any] | None,
                  *, against: str | None = None, threshold: float | None = None) -> dict[str, Any] | None:  # fmt: skip
        cfg = run.get("config") or {}
        against = against or cfg.get("gate_against") or "base"
        threshold = threshold if threshold is not None else cfg.get("gate_threshold", DEFAULT_THRESHOLD)
        if eval_result is None and not samples:
            return None
        if against == "base":
            return against_base(samples, threshold=threshold)
        ref = self.store.get_run(against)
        if ref["run_id"] == run["run_id"]:
            raise StageError(f"run {ref['run_id']} cannot be gated against itself")
        return against_run(
            samples, self.store.run_samples(ref["run_id"]), reference_run=ref["run_id"], threshold=threshold
        )

    def gate_run(self, run_id: str, *, against: str | None = None, threshold: float | None = None) -> GateResult:
        """Recompute a run's gate (against 'base' or another run id) and store it; returns the gate."""
        if threshold is not None and not 0 <= threshold <= 1:
            raise StageError(f"--threshold must be in [0, 1], got {threshold}")
        r = self.store.get_run(run_id)
        if r["state"] != "succeeded":
            raise StoreError(f"run {r['run_id']} is {r['state']}: only a finished, evaluated run has a gate")
        g = self._gate_for(r, self.store.run_samples(r["run_id"]), r["eval"], against=against, threshold=threshold)
        metrics = {**(r["metrics"] or {}), "gate": g}
        self.store.set_run_metrics(r["run_id"], metrics)
        return GateResult(run_id=r["run_id"], gate=g)

    # ------------------------------------------------------------------ sweeps

    def sweep(
        self,
        version: str,
        grid: list[str] | dict[str, list[Any]],
        *,
        config_file: str | Path | None = None,
        config: dict[str, Any] | None = None,
        max_steps: int | None = None,
        eval_limit: int | None = None,
        wait: bool = False,
        actor: str | None = None,
        env: dict[str, str] | None = None,
    ) -> SweepPlan:
        """One queued run per grid point, trained one at a time by a background driver (or here, `wait`)."""
        from workbench.sweep import launch_sweep, run_sweep

        g = grid if isinstance(grid, dict) else parse_grid(grid)
        points = grid_points(g)
        if len(points) > 64:
            raise StageError(f"the grid has {len(points)} points; a sweep runs at most 64")
        for p in points:  # every point must be a valid config before anything is written
            TrainConfig.from_dict({**(config or {}), **p})
        sweep_id = datetime.now(UTC).strftime("sweep-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        runs: list[dict[str, Any]] = []
        for i, p in enumerate(points):
            r = self.train(
                version,
                config_file=config_file,
                config={**(config or {}), **p},
                max_steps=max_steps,
                eval_limit=eval_limit,
                actor=actor,
                launch=False,
                sweep={"id": sweep_id, "params": p, "index": i, "size": len(points)},
            )
            runs.append({"run_id": r.run_id, "params": p, "out_dir": r.out_dir})
        dirs = [Path(r["out_dir"]) for r in runs]
        if wait:
            run_sweep(dirs, env=env)
            self.refresh_runs()
        else:
            launch_sweep(dirs, env=env)
        return SweepPlan(sweep_id=sweep_id, version=version, grid=g, runs=runs)

    @staticmethod
    def mark_sweeps(runs: list[dict[str, Any]]) -> None:
        """Give each run of a sweep {"id", "params", "best"}: the best finished run of its sweep by the
        sweep's best_metric on the version's own eval split (never an extra/gold eval)."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            sw = (r.get("config") or {}).get("sweep")
            if sw:
                r["sweep"] = {"id": sw["id"], "params": sw.get("params"), "best": False}
                groups.setdefault(sw["id"], []).append(r)
        for members in groups.values():
            metric = ((members[0].get("config") or {}).get("best_metric")) or "eval_loss"
            scored = []
            for r in members:
                m = r.get("metrics") or {}
                v = m.get(metric) if metric in LOWER_IS_BETTER else (m.get("tuned") or {}).get(metric)
                if r["state"] == "succeeded" and isinstance(v, int | float):
                    scored.append((v if metric in LOWER_IS_BETTER else -v, r["run_id"], r))
            if scored:
                min(scored, key=lambda x: (x[0], x[1]))[2]["sweep"]["best"] = True
            for r in members:
                r["sweep"]["metric"] = metric

    # ------------------------------------------------------------------ PII strings for the probe

    def _write_pii_strings(self, version: str, out_dir: Path) -> None:
        """pii_strings.json in the run folder: hashes and lengths of the version's PII findings."""
        from trainer.probe import PII_FILE

        try:
            rows = self.store.version_rows(version)
        except (AttributeError, StoreError):
            return
        data = self.store.pii_strings([r[1] for r in rows])
        (out_dir / PII_FILE).write_text(json.dumps(data), encoding="utf-8")

    # ------------------------------------------------------------------ model card

    def model_card(self, run_id: str, *, merged: bool = False, forced: bool = False) -> str:
        from trainer.modelcard import render
        from trainer.rundir import read_json

        r = self.store.get_run(run_id)
        out_dir = Path(r["out_dir"])
        cfg_file = read_json(out_dir / "config.json") or {}
        manifest = read_json(out_dir / "export" / "manifest.json") or {}
        return render(
            {
                "run_id": r["run_id"],
                "base_model": r["base_model"],
                "config": r["config"],
                "version": r["version"],
                "manifest": manifest or {"manifest_sha256": r["manifest_sha256"]},
                "metrics": r["metrics"],
                "gate": (r["metrics"] or {}).get("gate"),
                "mix": cfg_file.get("mix"),
                "merged": merged,
                "forced": forced,
            }
        )
