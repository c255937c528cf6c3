"""Issue 20 without the big model: the regression gate, the sweep grid, the model card, the PII
index of the memorisation probe, the forgetting mix-in (pure functions over small real inputs), and
a sweep of 4 tiny CPU runs — DoRA and rsLoRA as the grid, on a tiny random Llama that carries the
embedded SmolLM2's tokenizer and chat template — plus one full fine-tune, grouped in `sift runs`
and on the Compare page."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation.errors import StageError
from curation.records import Conversation, Message
from tests.conftest import ROOT, run_sift
from trainer import forgetting, gate, modelcard
from trainer.config import ConfigError, TrainConfig
from trainer.manifest import load_export, write_export
from trainer.probe import PiiIndex
from workbench.services.ship import grid_points, parse_grid

PAGES = ROOT / "workbench" / "app_pages"


def test_gate_holds_above_the_threshold_and_ships_at_it() -> None:
    json_ref = {"json_field_accuracy": 1.0, "rouge_l": 0.2}
    cases = [(i, {"json_field_accuracy": 1.0, "rouge_l": 0.1}, json_ref) for i in range(50)]
    g = gate.gate(cases, threshold=0.02)  # equal field accuracy: ROUGE-L is not the key score here
    assert (g["verdict"], g["regressed"], g["cases"], g["improved"]) == ("ship", 0, 50, 0)
    cases[7] = (7, {"json_field_accuracy": 2 / 3}, json_ref)
    g = gate.gate(cases, threshold=0.02)
    assert (g["verdict"], g["regressed"], g["regressed_cases"], g["regressed_fraction"]) == ("ship", 1, [7], 0.02)
    cases[9] = (9, {"json_field_accuracy": 0.0}, json_ref)
    g = gate.gate(cases, threshold=0.02, against="run:x")
    assert (g["verdict"], g["regressed"], g["against"]) == ("hold", 2, "run:x") and "over 2%" in g["reason"]
    # free text: ROUGE-L; a case without a reference answer is not a case
    g = gate.gate([(0, {"rouge_l": 0.4}, {"rouge_l": 0.5}), (1, {"rouge_l": 0.9}, None)], threshold=0.5)
    assert (g["verdict"], g["cases"], g["regressed"]) == ("hold", 1, 1)
    assert gate.gate([], threshold=0.02)["verdict"] == "hold"  # nothing shows it is no worse


def test_gate_against_a_run_matches_cases_by_prompt_and_reference() -> None:
    mine = [
        {"index": 0, "prompt": [{"role": "user", "content": "a"}], "reference": "x", "tuned_scores": {"rouge_l": 0.2}},
        {"index": 1, "prompt": [{"role": "user", "content": "b"}], "reference": "y", "tuned_scores": {"rouge_l": 0.9}},
    ]
    prod = [  # another row order, one case only
        {"index": 5, "prompt": [{"role": "user", "content": "a"}], "reference": "x", "tuned_scores": {"rouge_l": 0.6}},
    ]
    g = gate.against_run(mine, prod, reference_run="run-prod", threshold=0.02)
    assert (g["verdict"], g["cases"], g["regressed_cases"], g["against"]) == ("hold", 1, [0], "run:run-prod")
    g = gate.against_run(mine, [], reference_run="run-other")
    assert g["cases"] == 0 and "none of this run's eval cases" in g["reason"]


def test_sweep_grid_is_typed_and_checked() -> None:
    grid = parse_grid(["learning_rate=1e-4,2e-4", "lora_r=8,16", "use_dora=true,false"])
    assert grid == {"learning_rate": [1e-4, 2e-4], "lora_r": [8, 16], "use_dora": [True, False]}
    points = grid_points(grid)
    assert len(points) == 8 and points[0] == {"learning_rate": 1e-4, "lora_r": 8, "use_dora": True}
    for bad, msg in (
        (["lora_rank=8"], "'lora_rank' is not a trainer config field"),
        (["lora_r=8,x"], "'x' is not a int for 'lora_r'"),
        (["lora_r"], "expected FIELD=V1,V2"),
        (["lora_r=8", "lora_r=16"], "given twice"),
    ):
        with pytest.raises(StageError, match=msg):
            parse_grid(bad)


def test_config_checks_the_new_fields() -> None:
    for bad, msg in (
        ({"mix_fraction": 0.1}, "'mix_version' is needed"),
        ({"mix_version": "x", "mix_fraction": 1.0}, "'mix_fraction' must be in"),
        ({"best_metric": "bleu"}, "'best_metric' must be one of"),
        ({"report_to": ["wandb"]}, "'report_to' accepts"),
        ({"lora": False, "use_dora": True}, "full fine-tuning"),
        ({"gate_threshold": 2.0}, "'gate_threshold'"),
    ):
        with pytest.raises(ConfigError, match=msg):
            TrainConfig.from_dict(bad)


def test_pii_index_finds_strings_by_hash_only() -> None:
    secret, other = "Jane Doe", "555-0100"
    idx = PiiIndex({"sha256": [hashlib.sha256(s.encode()).hexdigest() for s in (secret, other)], "lengths": [8]})
    assert len(idx) == 2
    assert idx.found("Dear Jane Doe, call 555-0100.") == {
        hashlib.sha256(s.encode()).hexdigest() for s in (secret, other)
    }
    assert idx.found("Dear Jane Do, call 555-0101.") == set() and PiiIndex(None).found("Jane Doe") == set()
    # A missing list is "not checked", never "none found"; an empty list is a real "none".
    assert PiiIndex(None).known is False and PiiIndex({"sha256": [], "lengths": []}).known is True
    card = modelcard.render({"run_id": "r", "metrics": {"memorization": {"probed": 2, "pii_emitted": None}}})
    assert "PII: not checked" in card and "PII strings known" not in card


def test_store_lists_pii_strings_of_any_revision_without_the_text(wb) -> None:
    conv = Conversation(messages=(Message("user", "My name is Jane Doe."), Message("assistant", "Hello Jane Doe!")))
    p = wb.path.parent / "one.jsonl"
    from curation.formats import to_dialect

    p.write_text(json.dumps(to_dialect(conv, "openai")) + "\n")
    wb.import_files([p])
    cid = wb.list().conversations[0]["id"]
    wb.pii_add(cid, 1, 6, 14, "PERSON", actor="t")
    got = wb.store.pii_strings([cid])
    assert got == {"sha256": [hashlib.sha256(b"Jane Doe").hexdigest()], "lengths": [8]}
    assert wb.store.pii_strings(["nope"]) == {"sha256": [], "lengths": []}
    # what `sift train` puts in the run folder for the probe: the version's PII hashes, no text
    wb.freeze("v1", include="not-rejected", eval_fraction=0.0, exclude_unresolved_pii=False, allow_unchecked=True)
    wb._write_pii_strings("v1", wb.path.parent)
    written = (wb.path.parent / "pii_strings.json").read_text()
    assert json.loads(written) == got and "Jane" not in written


def test_builtin_generic_set_and_the_mix_in() -> None:
    generic = load_export(forgetting.builtin_path())
    assert generic.version == "generic" and len(generic.train) >= 24 and len(generic.eval) >= 8
    assert all(c.messages[-1].role == "assistant" and c.messages[-1].text.strip() for c in generic.train)
    task = [Conversation(messages=(Message("user", f"q{i}"), Message("assistant", f"a{i}"))) for i in range(18)]
    cfg = TrainConfig(mix_version=forgetting.BUILTIN, mix_fraction=0.1, seed=3)
    mixed, record = forgetting.mix(cfg, task, generic)
    assert record["conversations"] == 2 and record["train_after"] == 20 == len(mixed)  # 2 of 20 = 10%
    assert record["manifest_sha256"] == generic.manifest_sha256 and record["version"] == "generic"
    assert {c.id for c in mixed} >= {c.id for c in task} and forgetting.mix(cfg, task, generic)[0] == mixed  # seeded


def test_model_card_names_what_shipped_and_escapes_data() -> None:
    card = modelcard.render(
        {
            "run_id": "run-1",
            "base_model": "smollm2-135m-instruct",
            "config": {"lora_r": 8, "lora_alpha": 16, "use_dora": True, "learning_rate": 2e-4, "max_steps": 10},
            "version": "curated",
            "manifest": {
                "manifest_sha256": "ab" * 32,
                "version": {
                    "counts": {"train": 10, "eval": 2, "excluded": {"near_duplicate": 3}},
                    "stages": [{"stage": "dedup", "run_id": "r9"}],
                    "provenance": {"sources": [{"name": "t`<img src=x>`.jsonl", "licence": "CC-BY-4.0"}]},
                },
            },
            "metrics": {
                "base": {"rouge_l": 0.1},
                "tuned": {"rouge_l": 0.5},
                "memorization": {
                    "probed": 4,
                    "extracted_exact": 2,
                    "extracted_near": 3,
                    "pii_emitted": 1,
                    "base": {"extracted_exact": 0},
                },
                "forgetting": {"version": "generic", "n": 8, "eval_loss": {"base": 1.0, "tuned": 1.2, "delta": 0.2}},
            },
            "gate": {"verdict": "hold", "against": "base", "regressed": 1, "cases": 2, "threshold": 0.02},
            "forced": True,
        }
    )
    for want in ("smollm2-135m-instruct", "ab" * 32, "DoRA", "near_duplicate`: 3", "**hold**", "CC-BY-4.0",
                 "Exported with `--force`", "wrote 1 PII string", "verbatim", "Generic eval loss rose by 0.2"):  # fmt: skip
        assert want in card, want
    assert "<img src=x>" in card and "`t'<img src=x>'.jsonl`" in card  # data stays inside a code span


# ---------------------------------------------------------------------- tiny CPU runs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from curation.models import resolve_model

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(resolve_model())
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


# 4 CPU runs (a sweep of DoRA and rsLoRA) + a full fine-tune: ~40 s on the quiet 2-core VM.
@pytest.mark.timeout(1200)
def test_sweep_of_dora_and_rslora_and_a_full_fine_tune(tiny_model: Path, tmp_path: Path, monkeypatch) -> None:
    from tests.test_trainer_cpu import TINY, tickets

    convs = tickets(8)
    write_export(tmp_path / "export", convs[:6], convs[6:], version="v1")
    cfg = {**TINY, "base_model": str(tiny_model), "max_steps": 2, "max_new_tokens": 4, "probe_limit": 1,
           "probe_tokens": 4, "eval_loss_limit": 1, "save_steps": 1, "checkpoint_eval_limit": 1}  # fmt: skip
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    store, env = tmp_path / "sift.duckdb", {"SIFT_RUNS": str(tmp_path / "runs")}
    r = run_sift("sweep", str(tmp_path / "export"), "--grid", "use_dora=true,false", "--grid", "use_rslora=true,false",
                 "--config", str(tmp_path / "tiny.json"), "--eval-limit", "1", "--json",
                 store=store, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = json.loads(r.stdout)
    assert [x["params"] for x in sweep["runs"]] == [
        {"use_dora": a, "use_rslora": b} for a in (True, False) for b in (True, False)
    ]
    # a full fine-tune: every weight trains, the whole model is saved, base answers come from a frozen copy
    # (in this process: the trainer's own entry point, without another interpreter start-up).
    # The forgetting guard's mix-in rides along: 2 generic conversations for 6 task ones = 25%.
    import signal

    from trainer.main import main as trainer_main

    full_cfg = {**cfg, "lora": False, "mix_version": "builtin:generic", "mix_fraction": 0.25}
    (tmp_path / "full.json").write_text(json.dumps(full_cfg))
    full_dir = tmp_path / "full-run"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = trainer_main(["--manifest", str(tmp_path / "export"), "--config", str(tmp_path / "full.json"),
                             "--out", str(full_dir), "--eval-limit", "1"])  # fmt: skip
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    assert code == 0, (full_dir / "train.log").read_text()[-3000:]
    ev = json.loads((full_dir / "eval.json").read_text())
    assert ev["train"]["trainable_parameters"] == ev["train"]["parameters"] > 1_000_000
    assert (full_dir / "adapter" / "model.safetensors").exists()
    assert not (full_dir / "adapter" / "adapter_config.json").exists()
    assert ev["base"]["eval_loss"] != ev["tuned"]["eval_loss"] and ev["memorization"]["probed"] == 1
    mix = json.loads((full_dir / "config.json").read_text())["mix"]
    assert (mix["version"], mix["conversations"], mix["train_after"]) == ("generic", 2, 8)
    # meanwhile the sweep's driver trained its queued runs one at a time, in the background
    deadline = time.monotonic() + 900
    while True:
        runs = json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]
        if all(x["state"] not in ("queued", "running") for x in runs) or time.monotonic() > deadline:
            break
        assert sum(x["state"] == "running" for x in runs) <= 1  # one at a time
        time.sleep(2)
    # DoRA's magnitude vectors are in the adapter it saved; rsLoRA is in its config
    first = json.loads((Path(sweep["runs"][0]["out_dir"]) / "adapter" / "adapter_config.json").read_text())
    assert first["use_dora"] is True and first["use_rslora"] is True
    swept = [x for x in runs if x["sweep"]]
    assert len(swept) == 4 and {x["sweep"]["id"] for x in swept} == {sweep["sweep_id"]}
    assert all(x["state"] == "succeeded" for x in runs), [(x["state"], x["error"]) for x in runs]
    assert len(runs) == 4
    best = [x for x in swept if x["sweep"]["best"]]
    assert len(best) == 1 and best[0]["metrics"]["eval_loss"] == min(x["metrics"]["eval_loss"] for x in swept)
    for x in swept:  # the checkpoint harness: step 1 (a save_steps checkpoint) and the end, step 2
        assert [c["step"] for c in x["checkpoints"]] == [1, 2] and x["best_checkpoint"]["metric"] == "eval_loss"
        assert (Path(x["out_dir"]) / "checkpoints" / "step-1" / "adapter_config.json").exists()
    monkeypatch.setenv("SIFT_STORE", str(store))
    monkeypatch.setenv("SIFT_RUNS", env["SIFT_RUNS"])
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60).run()
    assert not at.exception
    assert any(sweep["sweep_id"] in m.value for m in at.markdown)
    frames = [f.value for f in at.dataframe]
    grouped = next(f for f in frames if "use_dora" in f.columns)
    assert sorted(grouped["run"]) == sorted(x["run_id"] for x in swept) and list(grouped["best"]).count("★") == 1


def test_recipe_label_tells_qlora_dora_and_full_fine_tuning_apart() -> None:
    from workbench.services.train import recipe_label

    base = {"lora": True, "load_in_4bit": True, "lora_r": 16, "learning_rate": 4e-4, "max_steps": 150}
    assert recipe_label(base) == "QLoRA r16, lr 0.0004, 150 steps"
    assert recipe_label({**base, "use_dora": True}) == "DoRA (4-bit) r16, lr 0.0004, 150 steps"
    assert recipe_label({**base, "load_in_4bit": False, "max_steps": 0, "num_train_epochs": 3.0}).startswith("LoRA r16")
    assert (
        recipe_label({**base, "lora": False, "learning_rate": 4e-5}) == "full fine-tuning (bf16), lr 4e-05, 150 steps"
    )
    assert recipe_label({}) is None
