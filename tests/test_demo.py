"""The proof-of-value demo (scripts/demo.py) on a tiny pool, without training: the raw version keeps
the planted PII, gold near-copies and leaky eval rows; the curated one carries none of them. Plus the
trainer's `extra_eval` hook the demo scores both runs with."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from curation.records import Conversation, Message
from tests.conftest import ROOT
from trainer.config import TrainConfig
from trainer.manifest import ManifestError, write_export


def load_demo():
    spec = importlib.util.spec_from_file_location("sift_demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    mod = load_demo()
    out = tmp_path_factory.mktemp("demo") / "demo"
    args = mod.resolve(
        mod.make_parser().parse_args(
            ["--out", str(out), "--n", "150", "--gold", "16", "--seed", "0", "--redact-processes", "1", "--no-train"]
        )
    )
    result = mod.run(args, log=lambda *_: None)
    return {"result": result, "out": out, "mod": mod}


def test_curated_export_carries_no_planted_pii_and_raw_does(demo: dict) -> None:
    audit = demo["result"]["audit"]
    planted = audit["raw"]["pii_strings_planted"]
    assert planted > 0
    assert audit["raw"]["pii_strings"] == planted
    assert audit["curated"]["pii_strings"] == 0


def test_raw_holds_gold_near_copies_and_a_leaky_eval_curated_does_not(demo: dict) -> None:
    raw, cur = demo["result"]["audit"]["raw"], demo["result"]["audit"]["curated"]
    assert sum(raw["gold_near_copies"].values()) > 0
    assert cur["gold_near_copies"] == {"train": 0, "eval": 0}
    assert raw["own_leakage_pairs"] > 0  # eval rows that near-duplicate train rows
    assert cur["own_leakage_pairs"] == 0
    assert raw["near_duplicate_pairs"] > 0 and cur["near_duplicate_pairs"] == 0
    for kind in ("broken_structure", "overlong"):
        assert raw["planted_problems"]["train"].get(kind, 0) > 0
        assert kind not in cur["planted_problems"]["train"]


def test_versions_record_how_they_were_made(demo: dict) -> None:
    out: Path = demo["out"]
    raw = json.loads((out / "exports" / "raw" / "manifest.json").read_text())
    check = raw["version"]["leakage_check"]
    assert check["allowed"] is True and len(check["leaks"]) == check["pairs"] > 0
    curated = json.loads((out / "exports" / "curated" / "manifest.json").read_text())
    assert "allowed" not in curated["version"]["leakage_check"]
    assert {s["stage"] for s in curated["version"]["stages"]} >= {"validate", "dedup"}
    gold = json.loads((out / "exports" / "gold" / "manifest.json").read_text())
    assert gold["version"]["counts"]["eval"] == 16
    review = demo["result"]["curation"]["review"]
    assert review["rejected"]["leakage: near-copy of a gold eval item"] > 0
    assert "| planted PII strings in the export | 14 of 14 | 0 of 14 |" in demo["result"]["table"]


def test_ablations_put_back_what_one_step_kept_out_and_nothing_else(demo: dict) -> None:
    """`sift ablate curated`: one version per step, parent curated; each holds every curated row (same
    split) plus the rows that step alone kept out (in train); the ground truth shows what came back."""
    import workbench

    out: Path = demo["out"]
    result = demo["result"]
    wb = workbench.open(out / "sift.duckdb")
    versions = {v["name"]: v for v in wb.versions().versions}
    audit = result["audit"]
    assert set(result["ablations"]) == {
        f"curated-without-{s}" for s in ("label_audit", "dedup", "redaction", "validation", "leakage_guard")
    }

    def rows(name: str) -> dict[str, tuple[str, int]]:
        return {cid: (split, rev) for split, cid, rev, _f, _s in wb.store.version_rows(name)}

    cur = rows("curated")
    for name in result["ablations"]:
        assert versions[name]["parent"] == "curated"
        assert wb.verify_version(name, out / "exports" / name).ok
        block = wb.version_manifest(name).version["ablation"]
        mine = rows(name)
        assert block["of"] == "curated" and block["held_out"] == "gold"
        assert set(cur) <= set(mine)
        back = set(mine) - set(cur)
        assert len(back) == sum(block["added"].values())
        assert all(mine[c][0] == "train" for c in back)
        changed = [c for c in cur if mine[c] != cur[c]]
        assert len(changed) == block["reverted"]
        assert all(mine[c][0] == cur[c][0] and mine[c][1] < cur[c][1] for c in changed)  # an earlier revision
        if block["without"] != "redaction":
            assert block["reverted"] == 0
    lk = wb.version_manifest("curated-without-leakage_guard").version["ablation"]
    assert lk["data"]["held_out_near_copies"]["train"] > lk["full"]["held_out_near_copies"]["train"] == 0
    assert audit["curated-without-leakage_guard"]["gold_near_copies"]["train"] > 0
    red = wb.version_manifest("curated-without-redaction").version["ablation"]
    assert red["reverted"] > 0 and red["data"]["pii_findings"] > red["full"]["pii_findings"]
    assert audit["curated-without-redaction"]["pii_strings"] > audit["curated"]["pii_strings"] == 0
    assert audit["curated-without-validation"]["planted_problems"]["train"].get("broken_structure", 0) > 0
    noisy = ("wrong_label", "label_confusion", "biased_annotator", "templated_answer")
    train = {v: audit[v]["planted_problems"]["train"] for v in ("curated", "curated-without-label_audit")}
    assert sum(train["curated-without-label_audit"].get(k, 0) for k in noisy) > sum(
        train["curated"].get(k, 0) for k in noisy
    )
    # An ablation of an ablation is refused; an unknown step is named.
    from curation.split import SplitError

    with pytest.raises(SplitError, match="is itself an ablation"):
        wb.ablate("curated-without-dedup", dry_run=True)
    with pytest.raises(SplitError, match=r"curated-without-dedup, .* exist already and are frozen"):
        wb.ablate("curated")  # refused before anything is frozen
    with pytest.raises(SplitError, match="unknown step"):
        wb.ablate("curated", steps=["typos"], dry_run=True)


def test_demo_refuses_to_replace_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mod = load_demo()
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(mod.DemoError, match="was not made by this demo"):
        mod.fresh_dir(tmp_path)
    assert (tmp_path / "keep.txt").exists()


def _conv(text: str) -> Conversation:
    return Conversation((Message("user", text), Message("assistant", 'ok\n{"category":"bug"}')))


def test_extra_eval_takes_an_eval_only_version_and_refuses_an_empty_one(tmp_path: Path) -> None:
    from trainer import extra_eval

    gold = write_export(tmp_path / "gold", [], [_conv("a"), _conv("b")], version="gold")
    export = extra_eval.load(TrainConfig(extra_eval=str(gold.parent)))
    assert export is not None and export.version == "gold" and len(export.eval) == 2
    assert extra_eval.load(TrainConfig()) is None
    empty = write_export(tmp_path / "empty", [_conv("a")], [], version="empty")
    with pytest.raises(
        ManifestError, match=re.escape(f"extra_eval: version 'empty' at {empty} has an empty eval split")
    ):
        extra_eval.load(TrainConfig(extra_eval=str(empty)))


def test_run_metrics_carry_the_extra_eval() -> None:
    from workbench.services.train import metrics_of

    tuned = {"json_field_accuracy": 0.5, "n": 2}
    m = metrics_of(
        {"eval_loss": 1.0, "tuned": tuned, "extra_eval": {"version": "gold", "eval_loss": 2.0, "tuned": tuned}},
        {"summary": {"train_loss": 1.5}},
    )
    assert m["extra_eval"] == {"version": "gold", "eval_loss": 2.0, "n_generated": None, "base": None, "tuned": tuned}


def test_compare_page_puts_the_shared_held_out_version_first(store_path: Path, tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    import workbench
    from tests.test_trainer_units import _fake_run_folder

    monkeypatch.setenv("SIFT_STORE", str(store_path))
    wb = workbench.open(store_path)
    good = 'Hi.\n{"category":"bug","priority":"high","product_area":"storage"}'
    for rid, version, gold in (("run-raw", "raw", 0.25), ("run-cur", "curated", 0.75)):
        out = tmp_path / rid
        wb.store.create_run(rid, version=version, manifest_sha256="x", out_dir=str(out), config={}, actor="t")
        _fake_run_folder(out, [good])
        ev = json.loads((out / "eval.json").read_text())
        ev["extra_eval"] = {
            "version": "gold",
            "eval_loss": 1.0,
            "n_generated": 1,
            "tuned": {"json_field_accuracy": gold},
        }
        (out / "eval.json").write_text(json.dumps(ev))
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "compare.py"), default_timeout=60).run()
    assert not at.exception
    held = at.dataframe[0].value
    assert list(held["version"]) == ["curated", "raw"] and list(held["held-out version"]) == ["gold", "gold"]
    assert list(held["held-out field accuracy"]) == [0.75, 0.25]
    assert list(held["own minus held-out"]) == [0.25, 0.75]  # own eval: the one answer was right
    assert at.selectbox(key="cmp_metric").value == "extra tuned json_field_accuracy"


def test_bundle_holds_what_the_trainer_needs_elsewhere(demo: dict, tmp_path: Path) -> None:
    """`--bundle`: a folder with the three exports (verifiable by their manifests), one config per
    training seed naming the gold export relative to the bundle, and jobs.json for each (version, seed)."""
    from trainer.config import load_config
    from trainer.manifest import load_export

    mod, out = demo["mod"], demo["out"]
    args = mod.resolve(mod.make_parser().parse_args(["--out", str(out), "--full", "--train-seeds", "1,2", "--recipes"]))
    bundle = tmp_path / "bundle"
    ablations = demo["result"]["ablations"]
    info = mod.write_bundle(args, out, out / "exports", bundle, ablations)
    jobs = json.loads((bundle / "jobs.json").read_text())
    assert jobs == info["jobs"] and [j["name"] for j in jobs] == [
        "raw-seed1",
        "curated-seed1",
        "raw-seed2",
        "curated-seed2",
        *(f"{v}-seed{s}" for s in (1, 2) for v in ablations),  # --full: two seeds per ablation
        "curated-dora-seed1",  # --recipes: issue 20's recipes beside QLoRA, first seed
        "curated-fullft-seed1",
    ]
    pii = {}
    for j in jobs:
        export = load_export(bundle / j["manifest"])  # files match their manifest
        assert export.version == j["version"] and export.train
        cfg = load_config(bundle / j["config"])
        assert cfg.seed == j["seed"] and cfg.extra_eval == "exports/gold" and cfg.max_steps == args.steps
        assert cfg.generic_eval == "builtin:generic" and cfg.probe_limit == 32
        assert (cfg.use_dora, cfg.lora) == {"dora": (True, True), "fullft": (False, False)}.get(
            j.get("recipe"), (False, True)
        )
        # What `sift train` writes before training: the version's PII string hashes, for the probe.
        pii[j["version"]] = json.loads((bundle / j["out"] / "pii_strings.json").read_text())
    assert pii["raw"]["sha256"], "the raw pool's planted PII reaches the memorisation probe"
    full = load_config(bundle / jobs[-1]["config"])
    assert full.learning_rate == pytest.approx(args.lr * 0.1)
    gold = load_export(bundle / "exports" / "gold", require_train=False)
    assert gold.eval
    # Collecting before any run came back is a clear error, not a half-written report.
    args.collect = tmp_path / "nothing-here"
    with pytest.raises(mod.DemoError, match="no finished runs"):
        mod.collect(args, log=lambda *_: None)


# Real runs' results, trimmed to version, training seed and metrics: "cpu_realistic_tiny", the tiny CPU
# demo on the realistic pool (scripts/demo.py ... --run-bundle; raw, curated and ablations), and
# "h100_random_noise", the three-seed H100 raw/curated runs as the README publishes them.
REAL_RUNS = ROOT / "tests" / "data" / "attribution_runs.json"


def _real_runs(which: str = "cpu_realistic_tiny") -> list[dict]:
    return json.loads(REAL_RUNS.read_text())[which]["runs"]


def test_attribution_of_the_h100_runs_is_the_published_paired_gain() -> None:
    """Raw as the parent of curated (no ablations): the 'all curation' row is curated − raw per seed,
    +0.026 ± 0.034 from the published 3-decimal scores (the README's +0.027 ± 0.034 is from the unrounded
    ones): a direction, not clear."""
    from workbench.services.ablate import attribution_table

    att = attribution_table("curated", "raw", [], _real_runs("h100_random_noise"))
    (row,) = att["steps"]
    assert (row["step"], row["version"], row["paired_seeds"]) == ("all", "raw", [1, 2, 3])
    assert row["bought"] == pytest.approx(0.026, abs=5e-4) and row["bought_sd"] == pytest.approx(0.0336, abs=5e-4)
    assert row["clear"] is False
    exact = attribution_table("curated", "raw", [], _real_runs("h100_random_noise"), "json_exact")["steps"][0]
    assert exact["bought"] == pytest.approx((-0.023 + 0.149 + 0.056) / 3, abs=5e-4) and exact["clear"] is False


def test_attribution_compares_one_recipe_and_leaves_dora_and_full_fine_tuning_apart() -> None:
    """The realistic-noise H100 runs: curated has three QLoRA seeds plus a DoRA and a full fine-tuning run
    of seed 1. Those two are other experiments: counted apart, never averaged into curated's seed 1."""
    import statistics

    from workbench.services.ablate import attribution_table

    runs = _real_runs("h100_realistic")
    assert sum(r["version"] == "curated" for r in runs) == 5

    def gold(version: str) -> dict[int, float]:
        return {
            r["config"]["seed"]: r["metrics"]["extra_eval"]["tuned"]["json_field_accuracy"]
            for r in runs
            if r["version"] == version and not r["config"].get("use_dora") and r["config"].get("lora", True)
        }

    att = attribution_table("curated", "raw", [], runs)
    assert att["other_recipe_runs"] == 2 and att["recipe"]["learning_rate"] == pytest.approx(4e-4)
    mine, raw = gold("curated"), gold("raw")
    assert att["full"]["runs"] == 3 and att["full"]["mean"] == pytest.approx(statistics.fmean(mine.values()), abs=1e-4)
    (row,) = att["steps"]
    diffs = [mine[s] - raw[s] for s in (1, 2, 3)]
    assert row["bought"] == pytest.approx(statistics.fmean(diffs), abs=1e-4)
    assert row["bought_sd"] == pytest.approx(statistics.stdev(diffs), abs=1e-4)
    # Mixing the recipes in (the bug this guards against) would move curated's mean by more than 0.04.
    mixed = statistics.fmean(
        [statistics.fmean([r["metrics"]["extra_eval"]["tuned"]["json_field_accuracy"] for r in runs
                           if r["version"] == "curated" and r["config"]["seed"] == s]) for s in (1, 2, 3)]
    )  # fmt: skip
    assert abs(mixed - att["full"]["mean"]) > 0.04


def test_attribution_pairs_real_runs_by_training_seed() -> None:
    import statistics

    from workbench.services.ablate import STEPS, attribution_table

    runs = _real_runs()
    names = sorted({r["version"] for r in runs if r["version"].startswith("curated-without-")})
    assert names, "the fixture holds runs of ablations"
    blocks = [
        (n, {"of": "curated", "without": n.rsplit("-", 1)[1], "added": {"rejected": 2}, "reverted": 0}) for n in names
    ]

    # rouge_l: 4 CPU steps do not yet get the label line right (field accuracy 0), but answers differ.
    metric = "rouge_l"

    def gold(r: dict) -> float:
        return r["metrics"]["extra_eval"]["tuned"][metric]

    def per_seed(version: str, rs: list[dict]) -> dict[int, float]:
        out: dict[int, list[float]] = {}
        for r in rs:
            if r["version"] == version:
                out.setdefault(r["config"]["seed"], []).append(gold(r))
        return {s: statistics.fmean(v) for s, v in out.items()}

    for subset in (runs, [r for r in runs if not (r["version"] == "curated" and r["config"]["seed"] == 2)]):
        att = attribution_table("curated", "raw", blocks, subset, metric)
        assert att["scored_on"] == ["gold"] and att["metric"] == metric
        mine = per_seed("curated", subset)
        assert att["full"]["mean"] == pytest.approx(statistics.fmean(mine.values()), abs=1e-4)
        assert [r["version"] for r in att["steps"]] == [
            *sorted(names, key=lambda n: list(STEPS).index(n.rsplit("-", 1)[1])),
            "raw",
        ]
        assert att["steps"][-1]["step"] == "all"
        for row in att["steps"]:
            theirs = per_seed(row["version"], subset)
            shared = sorted(set(mine) & set(theirs))
            assert row["paired_seeds"] == shared
            diffs = [mine[s] - theirs[s] for s in shared]
            if not diffs:
                assert row["bought"] is None
                continue
            assert row["bought"] == pytest.approx(statistics.fmean(diffs), abs=1e-4)
            if len(diffs) > 1:
                sd = statistics.stdev(diffs)
                assert row["bought_sd"] == pytest.approx(sd, abs=1e-4)
                assert row["clear"] == (statistics.fmean(diffs) > 2 * sd)
            else:
                assert row["bought_sd"] is None and row["clear"] is False
    scored = attribution_table("curated", "raw", blocks, runs, metric)["steps"]
    assert sum(r["bought"] is not None for r in scored) >= 2  # an ablation and the parent paired with curated
    # Without the held-out scores, the runs' own eval split is what is compared (and said so).
    own = [{**r, "metrics": {**r["metrics"], "extra_eval": None}} for r in runs]
    att = attribution_table("curated", "raw", blocks, own, metric)
    assert att["scored_on"] == ["own eval split"]
    assert att["full"]["mean"] == pytest.approx(
        statistics.fmean(
            statistics.fmean(
                r["metrics"]["tuned"][metric] for r in runs if r["version"] == "curated" and r["config"]["seed"] == s
            )
            for s in {r["config"]["seed"] for r in runs if r["version"] == "curated"}
        ),
        abs=1e-4,
    )


def test_compare_page_shows_what_each_step_bought(demo: dict, tmp_path: Path, monkeypatch) -> None:
    """The demo store's ablations, with the real runs' results registered against them: Compare's
    attribution section lists every step, the parent last, with the data-side counts."""
    from streamlit.testing.v1 import AppTest

    import workbench
    from tests.test_trainer_units import _fake_run_folder

    store = demo["out"] / "sift.duckdb"
    monkeypatch.setenv("SIFT_STORE", str(store))
    wb = workbench.open(store)
    good = 'Hi.\n{"category":"bug","priority":"high","product_area":"storage"}'
    for k, r in enumerate(_real_runs()):
        out = tmp_path / f"run{k}"
        wb.store.create_run(
            f"run{k}", version=r["version"], manifest_sha256="x", out_dir=str(out), config=r["config"], actor="t"
        )
        _fake_run_folder(out, [good])
        ev = json.loads((out / "eval.json").read_text())
        ev.update(
            tuned=r["metrics"]["tuned"], extra_eval=r["metrics"]["extra_eval"], eval_loss=r["metrics"]["eval_loss"]
        )
        (out / "eval.json").write_text(json.dumps(ev))
    expected = wb.attribution("curated")
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "compare.py"), default_timeout=60).run()
    assert not at.exception
    assert any(h.value == "What each curation step bought" for h in at.subheader)
    table = next(d.value for d in at.dataframe if "bought (paired by seed)" in d.value.columns)
    assert list(table["version"]) == [r["version"] for r in expected.steps]
    assert list(table["version"])[-1] == "raw" and len(table) == len(demo["result"]["ablations"]) + 1
    leak = table[table["version"] == "curated-without-leakage_guard"].iloc[0]
    assert leak["held-out near-copies in train"] > 0 and leak["rows put back"] > 0
    first = expected.steps[0]
    if first["bought"] is not None:
        assert table.iloc[0]["bought (paired by seed)"].startswith(f"{first['bought']:+.3f}")


@pytest.mark.slow
def test_bundle_trained_here_comes_back_through_import_run(tmp_path: Path) -> None:
    """The whole GPU path on a CPU, tiny: data side → bundle → `python -m trainer` per job (raw,
    curated and one ablation) → `sift import-run` → `sift attribution`, result.md with both tables."""
    mod = load_demo()
    out, bundle = tmp_path / "demo", tmp_path / "bundle"
    sizes = ["--n", "150", "--gold", "16", "--steps", "2", "--batch", "2", "--eval-limit", "2"]
    sizes += ["--max-new-tokens", "16", "--train-seeds", "1", "--ablation-seeds", "1", "--redact-processes", "1"]
    args = mod.resolve(mod.make_parser().parse_args(["--out", str(out), *sizes, "--bundle", str(bundle)]))
    mod.run(args, log=lambda *_: None)
    jobs = json.loads((bundle / "jobs.json").read_text())
    keep = [j for j in jobs if j["version"] in ("raw", "curated", "curated-without-leakage_guard")]
    (bundle / "jobs.json").write_text(json.dumps(keep))
    args = mod.resolve(mod.make_parser().parse_args(["--out", str(out), *sizes, "--run-bundle", str(bundle)]))
    args.collect = mod.run_bundle(args.run_bundle, args.threads, log=lambda *_: None)
    result = mod.collect(args, log=lambda *_: None)
    assert set(result["run_ids"]) == {"raw", "curated", "curated-without-leakage_guard"}
    att = result["attribution"]["json_field_accuracy"]
    assert att["scored_on"] == ["gold"] and att["full"]["runs"] == 1
    rows = {r["version"]: r for r in att["steps"]}
    assert rows["curated-without-leakage_guard"]["paired_seeds"] == [1] and rows["raw"]["paired_seeds"] == [1]
    assert rows["curated-without-dedup"]["runs"] == 0  # not trained: in the table, unscored
    md = (out / "result.md").read_text()
    assert "What each step bought" in md and "| leakage guard | curated-without-leakage_guard | 1 |" in md
