"""Trainer parts without training: config, manifest checks, rendering with the chat template,
metrics, run-folder status, and the workbench's ingest of a finished run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tickets import generate_conversations

import workbench
from curation.formats import map_openai
from curation.records import Conversation, Message, ToolCall
from tests.conftest import ROOT, run_sift, write
from trainer import metrics
from trainer.config import ConfigError, TrainConfig, estimate_vram_gib, load_config
from trainer.manifest import ManifestError, load_export, write_export
from trainer.rundir import HINTS, classify_error
from workbench import jobs


def tickets(n: int, seed: int = 3) -> list[Conversation]:
    return [map_openai(r)[0] for r in generate_conversations(n, seed=seed)]


# ---------------------------------------------------------------- config


def test_config_defaults_are_the_seeds_recipe() -> None:
    c = TrainConfig()
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.lora_target_modules) == (16, 32, 0.05, ["all-linear"])
    assert (c.learning_rate, c.lr_scheduler_type, c.warmup_ratio) == (2e-4, "cosine", 0.1)
    assert (c.load_in_4bit, c.bnb_4bit_quant_type, c.bnb_4bit_use_double_quant, c.bnb_4bit_compute_dtype) == (
        True,
        "nf4",
        True,
        "bfloat16",
    )
    assert c.assistant_only_loss and c.backend == "auto"
    helps = TrainConfig.fields_help()
    assert all(h["help"] for h in helps) and {h["name"] for h in helps} == set(c.to_dict())


def test_config_file_and_errors(tmp_path: Path) -> None:
    f = write(tmp_path / "c.toml", 'lora_r = 8\nlearning_rate = 1\nlora_target_modules = "q_proj, v_proj"\n')
    c = load_config(f, max_steps=5, eval_limit=None)
    assert (c.lora_r, c.learning_rate, c.max_steps, c.lora_target_modules) == (8, 1.0, 5, ["q_proj", "v_proj"])
    with pytest.raises(ConfigError, match=r"^unknown config field\(s\): lora_rank$"):
        load_config(write(tmp_path / "a.json", '{"lora_rank": 8}'))
    with pytest.raises(ConfigError, match=r"^config field 'lora_r' must be int, got str '8'$"):
        load_config(write(tmp_path / "b.json", '{"lora_r": "8"}'))
    with pytest.raises(ConfigError, match=r"^config field 'backend' must be one of auto, hf, unsloth, got 'tpu'$"):
        TrainConfig.from_dict({"backend": "tpu"})
    with pytest.raises(ConfigError, match=r"^cannot read config .*missing.json"):
        load_config(tmp_path / "missing.json")


def test_vram_estimate_grows_with_batch_and_shrinks_with_4bit() -> None:
    smol = {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "tie_word_embeddings": True,
    }
    a = estimate_vram_gib(TrainConfig(per_device_train_batch_size=8), smol)
    b = estimate_vram_gib(TrainConfig(per_device_train_batch_size=16), smol)
    c = estimate_vram_gib(TrainConfig(load_in_4bit=False), smol)
    assert b["total"] > a["total"] and c["weights"] > a["weights"]


# ---------------------------------------------------------------- manifest


def test_export_is_verified(tmp_path: Path) -> None:
    convs = tickets(6)
    write_export(tmp_path / "v", convs[:4], convs[4:], version="v1")
    e = load_export(tmp_path / "v")
    assert (e.version, len(e.train), len(e.eval)) == ("v1", 4, 2)
    assert e.train[0] == convs[0]
    with open(tmp_path / "v" / "eval.jsonl", "a") as f:
        f.write("\n")
    with pytest.raises(ManifestError, match=r"^eval.jsonl does not match the manifest \(sha256 "):
        load_export(tmp_path / "v")
    with pytest.raises(ManifestError, match=r"^no manifest at "):
        load_export(tmp_path / "nowhere")
    m = json.loads((tmp_path / "v" / "manifest.json").read_text())
    m["version"]["counts"]["train"] = 99
    (tmp_path / "v" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="no longer hashes to its manifest_sha256"):
        load_export(tmp_path / "v")


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def tok():
    from curation.models import load_tokenizer

    return load_tokenizer()


def test_assistant_only_labels(tok) -> None:
    from trainer.data import IGNORE, eval_prompts, render

    conv = Conversation(
        (
            Message("system", "Be brief."),
            Message("user", "2+2?"),
            Message("assistant", "4"),
            Message("user", "and 3+3?"),
            Message("assistant", "6"),
        )
    )
    ex = render(tok, conv, 512)
    trained = tok.decode([t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE])
    # Both assistant turns, each with its end-of-turn marker; nothing of the prompt.
    assert trained == "4<|im_end|>\n6<|im_end|>\n"
    assert all(lab in (IGNORE, t) for t, lab in zip(ex.input_ids, ex.labels, strict=True))
    cut = render(tok, conv, len(ex.input_ids) - 3)
    assert len(cut.input_ids) == len(ex.input_ids) - 3 and cut.truncated
    assert render(tok, conv, 10).input_ids == []  # nothing left to learn: dropped
    (p,) = eval_prompts([conv])
    assert p.reference == "6" and [m["role"] for m in p.messages] == ["system", "user", "assistant", "user"]


def test_conversations_the_template_refuses_are_dropped_and_counted(tok) -> None:
    from trainer.data import render_all

    ok = Conversation((Message("user", "status of c1?"), Message("assistant", "c1 is healthy.")))
    call = Conversation(
        (
            Message("user", "status of c1?"),
            Message("assistant", None, tool_calls=(ToolCall("lookup", '{"id": "c1"}', "call_1"),)),
            Message("tool", '{"ok": true}', tool_call_id="call_1"),
            Message("assistant", "c1 is healthy."),
        ),
    )
    no_answer = Conversation((Message("user", "hello?"),))
    got, stats = render_all(tok, [ok, call, no_answer], 512)
    # SmolLM2's ChatML template concatenates `content`, which a tool-call turn does not have.
    assert len(got) == 1 and stats["dropped_template_error"] == 1 and stats["dropped_no_target"] == 1


# ---------------------------------------------------------------- metrics


def test_text_metrics() -> None:
    assert metrics.exact_match(" yes \n", "yes") == 1.0
    assert metrics.token_f1("the cat sat", "the cat sat down") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert metrics.rouge_l("a b c d", "a c d") == pytest.approx(2 * (3 / 4) * 1 / (3 / 4 + 1))
    assert metrics.token_f1("", "") == 1.0 and metrics.rouge_l("x", "") == 0.0


def test_json_metrics_on_ticket_answers() -> None:
    ref = 'Thanks.\n{"category":"bug","priority":"high","product_area":"storage"}'
    good = 'Sorry!\n{"category": "bug", "priority": "high", "product_area": "storage"}'
    half = 'ok {"category":"bug","priority":"low","product_area":"console"}'
    assert metrics.json_scores(good, ref) == {"json_valid": 1.0, "json_field_accuracy": 1.0, "json_exact": 1.0}
    assert metrics.json_scores(half, ref) == {
        "json_valid": 1.0,
        "json_field_accuracy": pytest.approx(1 / 3),
        "json_exact": 0.0,
    }
    assert metrics.json_scores("no json here", ref) == {
        "json_valid": 0.0,
        "json_field_accuracy": 0.0,
        "json_exact": 0.0,
    }
    assert metrics.json_scores("anything", "plain text answer") is None
    agg = metrics.aggregate([metrics.score(good, ref), metrics.score("x", "plain")])
    assert agg["n"] == 2 and agg["n_json"] == 1 and agg["json_valid"] == 1.0


# ---------------------------------------------------------------- run folder, jobs, ingest


def test_error_hints() -> None:
    assert classify_error(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")) == "oom"
    assert classify_error(ImportError("No module named 'peft'")) == "import"
    assert classify_error(ValueError("x")) is None


def test_a_vanished_process_reads_as_failed_with_its_log_tail(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    write(tmp_path / "train.log", "loading\nKilled\n")
    write(tmp_path / "status.json", json.dumps({"state": "running", "pid": p.pid, "step": 3}))
    s = jobs.read_status(tmp_path)
    assert s["state"] == "failed" and s["hint"] == HINTS["killed"] and s["log_tail"].endswith("Killed")
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


def test_trainer_refuses_a_tampered_export(tmp_path: Path) -> None:
    convs = tickets(4)
    write_export(tmp_path / "v", convs[:3], convs[3:], version="v1")
    (tmp_path / "v" / "train.jsonl").write_text("{}\n")
    r = subprocess.run(
        [sys.executable, "-m", "trainer", "--manifest", str(tmp_path / "v"), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 1
    s = json.loads((tmp_path / "run" / "status.json").read_text())
    assert s["state"] == "failed" and s["error"].startswith("ManifestError: train.jsonl does not match the manifest")
    assert s["hint"] == HINTS["manifest"] and "train.jsonl does not match" in s["log_tail"]


def _fake_run_folder(out: Path, tuned_answers: list[str]) -> None:
    """A finished run folder as the trainer writes it (for ingest and compare without training)."""
    out.mkdir(parents=True, exist_ok=True)
    ref = 'Hi.\n{"category":"bug","priority":"high","product_area":"storage"}'
    rows = []
    for i, t in enumerate(tuned_answers):
        base = "Hello there."
        rows.append(
            {
                "index": i,
                "prompt": [{"role": "user", "content": f"q{i}"}],
                "reference": ref,
                "base": base,
                "tuned": t,
                "base_scores": metrics.score(base, ref),
                "tuned_scores": metrics.score(t, ref),
            }
        )
    write(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(out / "metrics.jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    summary = {"steps": 2, "train_loss": 1.75, "tokens_per_s": 100.0}
    ev = {
        "eval_loss": 1.2,
        "perplexity": 3.32,
        "train": summary,
        "base": metrics.aggregate([r["base_scores"] for r in rows]),
        "tuned": metrics.aggregate([r["tuned_scores"] for r in rows]),
    }
    write(out / "eval.json", json.dumps(ev))
    write(
        out / "status.json",
        json.dumps(
            {
                "state": "succeeded",
                "step": 2,
                "total": 2,
                "summary": summary,
                "started_at": "2026-01-01T00:00:00Z",
                "finished_at": "2026-01-01T00:01:00Z",
            }
        ),
    )


def test_ingest_runs_and_compare(store_path: Path, tmp_path: Path) -> None:
    wb = workbench.open(store_path)
    good = 'Hi.\n{"category":"bug","priority":"high","product_area":"storage"}'
    for rid, version, answers in (("run-a", "v1", [good, "nope"]), ("run-b", "v2", [good, good])):
        out = tmp_path / rid
        wb.store.create_run(
            rid, version=version, manifest_sha256="x", out_dir=str(out), config={"base_model": "m"}, actor="t"
        )
        _fake_run_folder(out, answers)
    runs = json.loads(run_sift("runs", "--json", store=store_path, check=True).stdout)["runs"]
    assert [(r["run_id"], r["version"], r["state"]) for r in runs] == [
        ("run-a", "v1", "succeeded"),
        ("run-b", "v2", "succeeded"),
    ]
    m = runs[0]["metrics"]
    assert m["eval_loss"] == 1.2 and m["train_loss"] == 1.75
    assert m["tuned"]["json_field_accuracy"] == 0.5 and m["base"]["json_valid"] == 0.0
    cmp = json.loads(run_sift("compare", "run-a", "run-b", "--json", store=store_path, check=True).stdout)
    assert [r["run_id"] for r in cmp["runs"]] == ["run-a", "run-b"] and cmp["versions"] == ["v1", "v2"]
    assert [e["tuned"] for e in cmp["examples"]] == [{"run-a": good, "run-b": good}, {"run-a": "nope", "run-b": good}]
    assert all(e["regressed_in"] == [] for e in cmp["examples"])  # the base answered no JSON at all
    assert wb.run_detail("run-a").curve == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    r = run_sift("cancel", "run-a", store=store_path)
    assert r.returncode == 1 and r.stderr.strip() == "error: run run-a already ended (succeeded)"
    r = run_sift("export-adapter", "run-a", "--out", str(tmp_path / "x"), store=store_path)
    assert r.returncode == 1 and r.stderr.strip() == "error: run run-a has no saved adapter (state succeeded)"


def test_train_without_versions_step_or_export_is_a_clean_error(store_path: Path) -> None:
    r = run_sift("train", "no-such-version", store=store_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: ")


def test_train_and_compare_pages_over_ingested_runs(store_path: Path, tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SIFT_STORE", str(store_path))
    wb = workbench.open(store_path)
    good = 'Hi.\n{"category":"bug","priority":"high","product_area":"storage"}'
    for rid, version, answers in (("run-a", "v1", ["<b>nope</b>", good]), ("run-b", "v2", [good, good])):
        wb.store.create_run(
            rid,
            version=version,
            manifest_sha256="x",
            out_dir=str(tmp_path / rid),
            config={"base_model": "m"},
            actor="t",
        )
        _fake_run_folder(tmp_path / rid, answers)
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "compare.py"), default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == ["run-a", "run-b"] and list(table["tuned json_field_accuracy"]) == [0.5, 1.0]
    at.multiselect(key="cmp_runs").set_value(["run-a", "run-b"]).run()
    texts = [t.value for t in at.text]
    assert good in texts and "<b>nope</b>" in texts  # shown as text, never as HTML
    at = AppTest.from_file(str(ROOT / "workbench" / "app_pages" / "train.py"), default_timeout=60).run()
    assert not at.exception
    assert any(m.label == "State" and m.value == "succeeded" for m in at.metric)
    # The quick CPU preset comes first; the GPU preset adds the memory estimate.
    assert not any("Estimated peak GPU memory" in c.value for c in at.caption)
    at.radio(key="train_preset").set_value("QLoRA on one GPU (recommended)").run()
    assert not at.exception
    assert any("Estimated peak GPU memory" in c.value for c in at.caption)


def test_train_a_frozen_version_exports_it_into_the_run(store_path: Path, tmp_path: Path) -> None:
    """`sift train VERSION` exports through the versions step; a base model that cannot load fails
    the run with its error and log tail (no training needed to see the whole path)."""
    wb = workbench.open(store_path)
    rows = list(generate_conversations(12, seed=9))
    f = write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    wb.import_files([f], actor="ana")
    wb.accept([c["id"] for c in wb.list(limit=100).conversations], actor="ana")
    frozen = wb.freeze("v1", eval_fraction=0.25, actor="ana")
    env = {"SIFT_RUNS": str(tmp_path / "runs")}
    r = run_sift(
        "train", "v1", "--base-model", str(tmp_path / "no-model"), "--wait", "--json", store=store_path, env=env
    )
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["state"] == "failed"
    run_dir = Path(out["out_dir"])
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    assert manifest["manifest_sha256"] == frozen.manifest_sha256 and manifest["name"] == "v1"
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["manifest"]["version"] == "v1" and saved["manifest"]["manifest_sha256"] == frozen.manifest_sha256
    (run,) = json.loads(run_sift("runs", "--json", store=store_path, env=env, check=True).stdout)["runs"]
    assert run["state"] == "failed" and "no-model" in run["error"] and run["version"] == "v1"


def test_merged_export_matches_base_plus_adapter(tmp_path: Path, tok) -> None:
    """`export-adapter --merge` on a tiny random model: the merged model computes what base + adapter did."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from trainer.export import ExportError, export_adapter

    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    peft = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        want = peft(input_ids=ids).logits
    got = export_adapter(tmp_path / "adapter", tmp_path / "merged", merge=True, base_model=str(tmp_path / "base"))
    assert got["merged"] is True and "model.safetensors" in got["files"] and "tokenizer.json" in got["files"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-4)
    plain = export_adapter(tmp_path / "adapter", tmp_path / "copy")
    assert plain["merged"] is False and "adapter_config.json" in plain["files"]
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_adapter(tmp_path / "adapter", tmp_path / "copy")


def test_generation_batches_by_length_and_answers_in_prompt_order(monkeypatch) -> None:
    """Prompts are batched by length under a logits budget (an overlong prompt must not take a
    hundred others into one huge prefill); answers still come back in the prompts' order and equal
    one-prompt-at-a-time answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.models import resolve_model
    from trainer import evaluate as ev
    from trainer.data import eval_prompts

    src = resolve_model()
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src)
    convs = [map_openai(r)[0] for r in generate_conversations(5, seed=4)]
    long = convs[0].replace_messages(
        [Message("user", "Our cluster is slow. " + "The log says: timeout on node n1. " * 60), convs[0].messages[-1]]
    )
    prompts = eval_prompts([*convs[1:3], long, *convs[3:]])
    calls: list[int] = []
    real = model.generate

    def counting(**kw):
        calls.append(int(kw["input_ids"].shape[0]))
        return real(**kw)

    monkeypatch.setattr(model, "generate", counting)
    batched = ev.generate(model, tok, prompts, max_new_tokens=5, batch_size=8)
    assert len(batched) == 5 and calls == [5]  # all fit the default budget: one batch
    calls.clear()
    monkeypatch.setattr(ev, "GENERATE_LOGITS_BUDGET", 1)  # no two prompts share a batch
    single = ev.generate(model, tok, prompts, max_new_tokens=5, batch_size=8)
    assert calls == [1] * 5 and single == batched


def test_the_profile_says_what_the_host_waits_for() -> None:
    """host_summary over a real (CPU) profile: the wall against the kernels' time, and each operation
    that makes the host wait for the device (here scalar reads and a data-dependent shape)."""
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    from trainer.callback import host_summary

    x = torch.randn(64, 64)
    with profile(activities=[ProfilerActivity.CPU]) as p:
        t0 = time.monotonic()
        for _ in range(3):
            y = x @ x
            float(y.sum().item())
            (y > 0).nonzero()
        wall = time.monotonic() - t0
    text = host_summary(p.key_averages(), wall)
    first, *waits = text.splitlines()
    assert first.startswith(f"host: wall {wall:.3f} s") and "GPU kernels 0.000 s (0% busy), 0 kernel launches" in first
    assert any("aten::_local_scalar_dense x3" in w or "aten::item x3" in w for w in waits), waits
    assert any("aten::nonzero x3" in w for w in waits), waits
    assert "aten::mm" not in text  # a product is not a wait
    with profile(activities=[ProfilerActivity.CPU]) as p:
        x @ x
    assert host_summary(p.key_averages(), 0.01).splitlines()[1] == "  waits: none recorded"


def test_memory_peak_names_what_was_live_at_the_highest_point() -> None:
    """memory_peak over an allocator trace in the format of torch.cuda.memory._snapshot() (recorded
    only on CUDA): the peak is where the most recorded memory was live, a block freed before it is
    not counted, frees of blocks allocated before recording are ignored, and torch's frames are
    skipped to the first caller's."""
    from trainer.callback import memory_peak

    def at(name: str, line: int) -> list[dict[str, object]]:
        return [{"filename": "/x/torch/nn/functional.py", "line": 1, "name": "linear"},
                {"filename": f"/site/trainer/{name}.py", "line": line, "name": name}]  # fmt: skip

    mib = 2**20
    trace = [
        {"action": "free_completed", "addr": 999, "size": 50 * mib, "frames": []},  # from before recording
        {"action": "alloc", "addr": 1, "size": 100 * mib, "frames": at("fp8", 10)},
        {"action": "alloc", "addr": 2, "size": 30 * mib, "frames": at("fp8", 10)},
        {"action": "alloc", "addr": 3, "size": 200 * mib, "frames": at("head", 5)},
        {"action": "free_completed", "addr": 3, "size": 200 * mib, "frames": []},
        {"action": "alloc", "addr": 4, "size": 250 * mib, "frames": at("mlp", 7)},  # peak: 1, 2, 4 live
        {"action": "free_completed", "addr": 1, "size": 100 * mib, "frames": []},
        {"action": "alloc", "addr": 5, "size": 10 * mib, "frames": at("mlp", 8)},
    ]
    text = memory_peak({"device_traces": [trace]})
    first, *rows = text.splitlines()
    assert first.startswith(f"memory: at the recorded peak, {380 / 1024:.3f} GiB")
    assert rows[0].split() == ["250.0", "MiB", "trainer/mlp.py:7", "mlp"]
    assert rows[1].split() == ["130.0", "MiB", "trainer/fp8.py:10", "fp8"]
    assert len(rows) == 2  # head's block was freed before the peak; mlp.py:8 came after it
    assert memory_peak({"device_traces": [[]]}) == "memory: no allocations recorded"
