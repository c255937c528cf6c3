"""Attribution: which curation step paid off.

`ablate(V)` builds leave-one-step-out versions of a curated version V, each with parent V and a
manifest block `ablation` that says which step it leaves out and what that changes in the data.
`attribution(V)` puts the runs of V, of those versions and of V's own parent (no curation at all)
side by side: per step, the gold metric V gains over the version without that step, paired by
training seed, with the spread over seeds, beside the data-side counts.

A conversation V left out is put back in the version without step S only when S alone kept it out:
its blocking reasons (the stages of its current revision's blocking flags, an unresolved PII
finding, the stage a rejection's reason names as `stage: why`) are all S's. A row rejected for no
recorded reason, or left out as not accepted, stays out of every ablation (a human call, no step's).
Rows put back go to train (the eval split stays V's, so own-eval scores stay comparable). Without
redaction, every pinned revision a redaction made is replaced by the revision before it.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation import manifest as mf
from curation.records import Conversation
from curation.split import SPLITS, SplitError
from workbench.services.core import default_actor
from workbench.services.results import Result, optional
from workbench.services.versions import VersionsService
from workbench.store import Store
from workbench.store._db import NotFound

# step → (the stages whose verdicts it stands for, what it is called on Compare)
STEPS: dict[str, tuple[tuple[str, ...], str]] = {
    "label_audit": (("labels",), "label audit"),
    "dedup": (("dedup",), "dedup"),
    "redaction": (("pii",), "PII redaction"),
    "validation": (("validate",), "validation gate"),
    "leakage_guard": (("leakage",), "leakage guard"),
}
# Names a rejection reason may start with ("<name>: why") to say which stage it acts on.
_REASON_STAGES = {
    **{stage: stage for stages, _ in STEPS.values() for stage in stages},
    **{step: STEPS[step][0][0] for step in STEPS},
    "redaction": "pii",
    "validation": "validate",
    "eval_leakage": "leakage",
}
_FREEZE_REASON = {"validate": "validation_error", "dedup": "near_duplicate", "pii": "pii_unresolved"}
METRICS = ("json_field_accuracy", "json_exact", "json_valid", "rouge_l", "token_f1", "exact_match")


def ablation_name(version: str, step: str) -> str:
    return f"{version}-without-{step}"


def _reason_stage(reason: str | None) -> str | None:
    if not reason or ":" not in reason:
        return None
    return _REASON_STAGES.get(reason.split(":", 1)[0].strip().lower())


@dataclass(frozen=True)
class AblationPlan(Result):
    """`sift ablate --json`: the version's data-side counts (`full`, and its `parent`'s, None
    without one), then one entry per step `{"step", "version", "added", "reverted"}` plus `skipped`
    (why nothing was frozen), or `data` and (unless a dry run) `manifest_sha256`. `dry_run` is
    present (True) only on a dry run."""

    version: str
    held_out: str | None
    full: dict[str, Any]
    parent: dict[str, Any] | None
    ablations: list[dict[str, Any]]
    dry_run: bool | None = optional()


@dataclass(frozen=True)
class Attribution(Result):
    """`sift attribution --json`: the version's score (`full`: runs, seeds, mean, sd, data) and one
    row per ablation (`steps`: label, version, runs, mean, sd, bought, bought_sd, paired_seeds,
    clear, data, added, reverted…), scored on `scored_on`; `recipe` the training recipe compared."""

    version: str
    metric: str
    scored_on: list[str] | None
    full: dict[str, Any]
    steps: list[dict[str, Any]]
    recipe: dict[str, Any] | None
    other_recipe_runs: int


class AblationService(VersionsService):
    store: Store

    def ablate(
        self,
        version: str,
        *,
        steps: list[str] | None = None,
        held_out: str | Path | None = None,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> AblationPlan:
        """Freeze `<version>-without-<step>` for each step (default all of `STEPS`) that changes
        anything; `held_out` (an export folder, or a version of this store) adds the count of each
        version's rows that near-copy one of its eval items."""
        unknown = sorted(set(steps or ()) - set(STEPS))
        if unknown:
            raise SplitError(f"unknown step(s) {', '.join(unknown)}: use {', '.join(STEPS)}")
        steps = list(steps or STEPS)
        actor = actor or default_actor()
        manifest = json.loads(self.store.get_version(version)["manifest_text"])
        if manifest["version"].get("ablation"):
            raise SplitError(f"version {version!r} is itself an ablation of {manifest['version']['ablation']['of']!r}")
        existing = {v["name"] for v in self.store.list_versions()} & {ablation_name(version, s) for s in steps}
        if existing and not dry_run:
            raise SplitError(
                f"version(s) {', '.join(sorted(existing))} exist already and are frozen: ablate other --step(s)"
            )
        inputs = self.store.ablation_inputs(version)
        loaded = self.store.load_version(version, contents=True)
        if loaded["problems"]:
            raise SplitError(f"version {version!r} changed after it was frozen: {loaded['problems'][0]}")
        shas = {r[1]: r[4] for r in loaded["rows"]}
        pinned = {
            cid: (split, rev, Conversation.from_json(content), shas[cid])
            for split, cid, rev, content in loaded["contents"]
        }
        families = {r[1]: r[3] for r in loaded["rows"]}
        unresolved = set(getattr(self.store, "pii_unresolved_conversations", lambda: set())())
        findings = {(cid, rev): n for cid, rev, n in inputs["pii_findings"]}
        before = {b[0]: b for b in inputs["before_redaction"]}
        include = manifest["version"]["config"].get("include", "accepted")

        # Why each left-out conversation is out: the stages that kept it out (empty: a human call).
        left: dict[str, dict[str, Any]] = {}
        for cid, status, rev, family, content, sha, _kind, flag_stages, reason in inputs["left_out"]:
            stages = set(flag_stages or ())
            if cid in unresolved:
                stages.add("pii")
            human = False
            if status == "rejected":
                named = _reason_stage(reason)
                if named:
                    stages.add(named)
                elif not stages:
                    human = True
            elif status != "accepted" and include == "accepted":
                human = True
            left[cid] = {
                "revision": rev,
                "family": family,
                "content": content,
                "sha": sha,
                "stages": frozenset(stages),
                "human": human,
                "status": status,
            }

        held = self._held_out(held_out) if held_out is not None else None
        full_rows = dict(pinned)
        base_data = self._data(full_rows, findings, held, before)
        parent = manifest.get("parent")
        parent_data = None
        if parent:
            p_loaded = self.store.load_version(parent, contents=True)
            p_shas = {r[1]: r[4] for r in p_loaded["rows"]}
            p_rows = {cid: (s, rev, Conversation.from_json(c), p_shas[cid]) for s, cid, rev, c in p_loaded["contents"]}
            p_find = {(cid, rev): n for cid, rev, n in self.store.pii_counts([(c, r[1]) for c, r in p_rows.items()])}
            parent_data = {"version": parent, **self._data(p_rows, p_find, held)}
        out: dict[str, Any] = {"version": version, "held_out": held["name"] if held else None, "full": base_data}
        out["parent"] = parent_data
        out["ablations"] = []
        for step in steps:
            stages = set(STEPS[step][0])
            rows = dict(full_rows)
            added: Counter[str] = Counter()
            for cid, info in left.items():
                if info["human"] or not info["stages"] or not info["stages"] <= stages:
                    continue
                rows[cid] = ("train", info["revision"], Conversation.from_json(info["content"]), info["sha"])
                families[cid] = info["family"]
                reason = "rejected" if info["status"] == "rejected" else None
                if reason is None:
                    reason = next((_FREEZE_REASON[s] for s in sorted(info["stages"]) if s in _FREEZE_REASON), "other")
                added[reason] += 1
            reverted = 0
            if step == "redaction":
                for cid, (split, rev, _conv, _sha) in list(rows.items()):
                    b = before.get(cid)
                    if b is not None and b[1] == rev:
                        rows[cid] = (split, b[2], Conversation.from_json(b[3]), b[4])
                        reverted += 1
            n_added = sum(added.values())
            name = ablation_name(version, step)
            entry: dict[str, Any] = {"step": step, "version": name, "added": n_added, "reverted": reverted}
            if not n_added and not reverted:
                entry["skipped"] = f"nothing in {version!r} was left out or changed by {STEPS[step][1]} alone"
                out["ablations"].append(entry)
                continue
            data = self._data(rows, findings, held, before)
            entry["data"] = data
            if not dry_run:
                entry["manifest_sha256"] = self._freeze_ablation(
                    name, version, manifest, rows, families, step, dict(added), reverted, data, base_data,
                    parent_data, held, actor,
                )  # fmt: skip
            out["ablations"].append(entry)
        return AblationPlan(**out, dry_run=True if dry_run else None)

    # ------------------------------------------------------------ helpers

    def _held_out(self, held_out: str | Path) -> dict[str, Any]:
        """The held-out eval items: an export folder's eval split, or a version of this store."""
        path = Path(held_out)
        if path.exists():
            from trainer.manifest import ManifestError, load_export

            try:
                export = load_export(path, require_train=False)
            except ManifestError as e:
                raise SplitError(f"--held-out {held_out}: {e}") from None
            return {"name": export.version, "eval": {f"held-out-{i}": c for i, c in enumerate(export.eval)}}
        try:
            loaded = self.store.load_version(str(held_out), contents=True)
        except NotFound:
            raise SplitError(f"--held-out {held_out}: neither an export folder nor a version of this store") from None
        return {
            "name": str(held_out),
            "eval": {
                f"held-out-{cid}": Conversation.from_json(c) for s, cid, _r, c in loaded["contents"] if s == "eval"
            },
        }

    def _data(
        self,
        rows: dict[str, tuple[str, int, Conversation, str]],
        findings: dict[tuple[str, int], int],
        held: dict[str, Any] | None,
        before: dict[str, tuple[Any, ...]] | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "train": sum(1 for r in rows.values() if r[0] == "train"),
            "eval": sum(1 for r in rows.values() if r[0] == "eval"),
            "pii_findings": sum(findings.get((cid, r[1]), 0) for cid, r in rows.items()),
        }
        if held is not None:
            from curation.dedup import contamination

            # A redaction placeholder must not hide a copy of a test item: check the text before it too.
            convs = {cid: r[2] for cid, r in rows.items()}
            for cid, r in rows.items():
                b = (before or {}).get(cid)
                if b is not None and b[1] == r[1]:
                    convs[f"{cid}\x00before"] = Conversation.from_json(b[3])
            pairs = contamination(convs, held["eval"])
            near = {p.train_id.split("\x00")[0] for p in pairs}
            data["held_out_near_copies"] = {s: sum(1 for cid in near if rows[cid][0] == s) for s in SPLITS}
        return data

    def _freeze_ablation(
        self,
        name: str,
        of: str,
        manifest: dict[str, Any],
        rows: dict[str, tuple[str, int, Conversation, str]],
        families: dict[str, str],
        step: str,
        added: dict[str, int],
        reverted: int,
        data: dict[str, Any],
        full: dict[str, Any],
        parent: dict[str, Any] | None,
        held: dict[str, Any] | None,
        actor: str,
    ) -> str:
        version = json.loads(json.dumps(manifest["version"]))  # a deep copy of V's block
        ordered = sorted(rows.items(), key=lambda kv: (kv[1][0], kv[0]))
        table = [(cid, rev, split, families[cid], sha) for cid, (split, rev, _conv, sha) in ordered]
        splits: dict[str, list[dict[str, Any]]] = {
            s: [{"id": r[0], "revision": r[1], "sha256": r[4], "family": r[3]} for r in table if r[2] == s]
            for s in SPLITS
        }
        by_split: dict[str, dict[str, Conversation]] = {s: {} for s in SPLITS}
        for cid, (split, _rev, conv, _sha) in rows.items():
            by_split[split][cid] = conv
        files = {}
        for s, fname in mf.split_file_names("openai").items():
            blob, _ = mf.render_split([(r["id"], by_split[s][r["id"]]) for r in splits[s]], "openai")
            files[fname] = mf.bytes_sha256(blob)
        dedup_run = next((r for r in version.get("stages", []) if r.get("stage") == "dedup"), None)
        leaks, method = self._leaks(by_split["train"], by_split["eval"], dedup_run)
        excluded = dict(version["counts"].get("excluded") or {})
        for reason, n in added.items():
            if reason in excluded:
                excluded[reason] -= n
                if not excluded[reason]:
                    del excluded[reason]
        left_stages = set(STEPS[step][0])
        version.update(
            splits=splits,
            token_stats=None,
            stages=[r for r in version.get("stages", []) if r.get("stage") not in left_stages],
            leakage_check={
                "method": method,
                "pairs": len(leaks),
                "allowed": True,
                "leaks": [x.to_dict() for x in leaks],
            },
            ablation={
                "of": of,
                "without": step,
                "stages": sorted(left_stages),
                "added": added,
                "reverted": reverted,
                "held_out": held["name"] if held else None,
                "data": data,
                "full": full,
                "parent": parent,
            },
        )
        version["counts"] = {
            "train": len(splits["train"]),
            "eval": len(splits["eval"]),
            "families": {s: len({r["family"] for r in splits[s]}) for s in SPLITS},
            "excluded": excluded,
        }
        ts, built = self._manifest(name, parent=of, version=version, files=files, actor=actor)
        self.store.create_version(
            name,
            manifest_text=mf.manifest_text(built),
            manifest_sha256=built["manifest_sha256"],
            parent=of,
            rows=table,
            actor=actor,
            ts=ts,
        )
        return str(built["manifest_sha256"])

    # ------------------------------------------------------------ attribution

    def ablated_versions(self) -> list[str]:
        """Versions that have leave-one-step-out versions (`sift ablate`), in freeze order."""
        out: list[str] = []
        for v in self.store.list_versions():
            if v["parent"] is None or v["parent"] in out:
                continue
            block = json.loads(self.store.get_version(v["name"])["manifest_text"])["version"].get("ablation")
            if block and block.get("of") == v["parent"]:
                out.append(v["parent"])
        return out

    def attribution(self, version: str, *, metric: str = "json_field_accuracy") -> Attribution:
        """What each step bought: per ablation of `version` (and its parent, no curation at all), the
        runs' `metric` on the shared held-out version when they have one (else their own eval split),
        and `bought` = the mean over training seeds of (version's score − the ablation's score), with
        the sample standard deviation of those paired differences; beside the data-side counts."""
        if metric not in METRICS:
            raise SplitError(f"unknown metric {metric!r}: use {', '.join(METRICS)}")
        manifest = json.loads(self.store.get_version(version)["manifest_text"])
        listed = self.store.list_versions()
        ablations: list[tuple[str, dict[str, Any]]] = []
        for v in listed:
            if v["parent"] != version:
                continue
            block = json.loads(self.store.get_version(v["name"])["manifest_text"])["version"].get("ablation")
            if block and block.get("of") == version:
                ablations.append((v["name"], block))
        runs = [r for r in self.store.list_runs(states=("succeeded",))]
        return Attribution(**attribution_table(version, manifest.get("parent"), ablations, runs, metric))


def _score(run: dict[str, Any], metric: str) -> tuple[float | None, str | None]:
    m = run.get("metrics") or {}
    extra = m.get("extra_eval") or {}
    value = (extra.get("tuned") or {}).get(metric)
    if value is not None:
        return float(value), extra.get("version")
    value = (m.get("tuned") or {}).get(metric)
    return (float(value) if value is not None else None), None


# What makes two runs the same experiment but for their seed: the training arithmetic and data, not
# how they were evaluated or where they ran.
RECIPE_KEYS = (
    "base_model", "backend", "lora", "use_dora", "use_rslora", "lora_r", "lora_alpha", "lora_dropout",
    "lora_target_modules", "load_in_4bit", "learning_rate", "lr_scheduler_type", "warmup_ratio",
    "weight_decay", "optim", "max_steps", "num_train_epochs", "per_device_train_batch_size",
    "gradient_accumulation_steps", "max_seq_len", "packing", "assistant_only_loss", "system_prompt",
    "mix_version", "mix_fraction",
)  # fmt: skip


def _recipe(run: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    config = run.get("config") or {}
    return tuple((k, json.dumps(config[k], sort_keys=True)) for k in RECIPE_KEYS if k in config)


def _spread(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(statistics.fmean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else None


def attribution_table(
    version: str,
    parent: str | None,
    ablations: list[tuple[str, dict[str, Any]]],
    runs: list[dict[str, Any]],
    metric: str = "json_field_accuracy",
) -> dict[str, Any]:
    """The attribution table from versions and finished runs (`{"version", "metric", "config": {"seed"},
    "metrics"}` each, as `Store.list_runs` gives them); pure, so it is tested on real runs' results."""
    per: dict[str, dict[int | None, list[float]]] = {}
    scored_on: set[str | None] = set()
    # Only runs of one training recipe are compared: a DoRA or full fine-tuning run of `version` beside
    # its QLoRA seeds is another experiment, not another seed. The recipe is the one most of
    # `version`'s runs share (the first such run's on a tie); runs of other recipes are counted apart.
    recipes = [_recipe(r) for r in runs if r["version"] == version and _score(r, metric)[0] is not None]
    recipe = max(recipes, key=recipes.count) if recipes else None
    left_out = 0
    for r in runs:
        if recipe is not None and _recipe(r) != recipe:
            left_out += _score(r, metric)[0] is not None
            continue
        value, on = _score(r, metric)
        if value is None:
            continue
        seed = (r.get("config") or {}).get("seed")
        per.setdefault(r["version"], {}).setdefault(seed, []).append(value)
        if r["version"] == version:
            scored_on.add(on)
    # Runs of a version scored on another held-out set than V's runs are not comparable: leave them out.
    by_seed = {v: {s: statistics.fmean(x) for s, x in d.items()} for v, d in per.items()}

    def summary(name: str) -> dict[str, Any]:
        seeds = by_seed.get(name, {})
        mean, sd = _spread(list(seeds.values()))
        return {"runs": sum(len(x) for x in per.get(name, {}).values()), "seeds": sorted(seeds, key=str),
                "mean": mean, "sd": sd}  # fmt: skip

    full = {"version": version, **summary(version)}
    rows: list[dict[str, Any]] = []
    candidates: list[tuple[str, str, str, dict[str, Any] | None]] = [
        (name, block["without"], STEPS.get(block["without"], ((), block["without"]))[1], block)
        for name, block in sorted(ablations, key=lambda x: list(STEPS).index(x[1]["without"]) if x[1]["without"] in STEPS else 99)
    ]  # fmt: skip
    if parent:
        candidates.append((parent, "all", "all curation (the parent version)", None))
    mine = by_seed.get(version, {})
    full_data = next((b.get("full") for _, b in ablations if b.get("full")), None)
    for name, step, label, block in candidates:
        theirs = by_seed.get(name, {})
        paired = sorted(set(mine) & set(theirs), key=str)
        bought, bought_sd = _spread([mine[s] - theirs[s] for s in paired])
        data = (block or {}).get("data")
        if block is None:
            data = next((b.get("parent") for _, b in ablations if b.get("parent")), None)
        rows.append(
            {
                "step": step,
                "label": label,
                "version": name,
                **summary(name),
                "paired_seeds": paired,
                "bought": bought,
                "bought_sd": bought_sd,
                "clear": bool(bought is not None and bought_sd is not None and len(paired) >= 2 and bought > 2 * bought_sd),
                "data": data,
                "added": sum((block.get("added") or {}).values()) if block else None,
                "added_by_reason": block.get("added") if block else None,
                "reverted": block.get("reverted") if block else None,
            }
        )  # fmt: skip
    return {
        "version": version,
        "metric": metric,
        "scored_on": sorted((s or "own eval split") for s in scored_on) or None,
        "full": {**full, "data": full_data},
        "steps": rows,
        "recipe": {k: json.loads(v) for k, v in recipe} if recipe else None,
        "other_recipe_runs": left_out,
    }


__all__ = ["STEPS", "AblationPlan", "AblationService", "Attribution", "ablation_name", "attribution_table"]
