"""A tiny real training run on CPU through `sift train`: the embedded SmolLM2, a handful of ticket
conversations, a few steps. Loss goes down, the adapter reloads and generates, evaluation writes
metrics for base and tuned, and the run shows in `sift runs`, `sift compare` and the pages."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tickets import generate_conversations

from curation.formats import map_openai
from curation.records import Conversation, Message
from tests.conftest import ROOT, run_sift
from trainer.manifest import write_export
from workbench import jobs

PAGES = ROOT / "workbench" / "app_pages"

TINY = {
    "max_steps": 4,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "max_seq_len": 128,
    "learning_rate": 2e-3,
    "warmup_ratio": 0.0,
    "lr_scheduler_type": "constant",
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "max_new_tokens": 16,
    "eval_batch_size": 2,
    "eval_loss_limit": 2,
}


# The fixture's run also exercises issue 20: a save_steps checkpoint scored by the harness, the
# regression gate, the forgetting guard's generic eval and the memorisation probe.
SHIP = {
    **TINY,
    "save_steps": 2,
    "checkpoint_eval_limit": 1,
    "generic_eval": "builtin:generic",
    "probe_limit": 2,
    "probe_tokens": 8,
}


def tickets(n: int) -> list[Conversation]:
    """The `n` shortest of 80 ticket conversations, with a short system prompt: CPU steps stay cheap
    and every answer (ending in its label JSON) fits in max_seq_len."""
    convs = [map_openai(r)[0] for r in generate_conversations(80, seed=11)]
    short = [
        c.replace_messages([Message("system", "Triage the ticket."), *(m for m in c.messages if m.role != "system")])
        for c in convs
    ]
    return sorted(short, key=lambda c: (len(c.content_json()), c.id))[:n]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One finished run: the store, the CLI's answer and the run folder."""
    tmp = tmp_path_factory.mktemp("train")
    convs = tickets(8)
    write_export(tmp / "export-v1", convs[:6], convs[6:], version="v1")
    (tmp / "tiny.json").write_text(json.dumps(SHIP))
    store = tmp / "sift.duckdb"
    env = {"SIFT_RUNS": str(tmp / "runs")}
    t0 = time.monotonic()
    r = run_sift(
        "train",
        str(tmp / "export-v1"),
        "--config",
        str(tmp / "tiny.json"),
        "--eval-limit",
        "2",
        "--wait",
        "--json",
        store=store,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    yield {"store": store, "env": env, "run": out, "tmp": tmp, "seconds": time.monotonic() - t0}
    # A run left going by a failed test must not outlive the tests (it runs in its own session).
    for status in (tmp / "runs").glob("*/status.json"):
        pid = json.loads(status.read_text()).get("pid")
        if pid and jobs.pid_alive(pid):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def test_tiny_run_trains_and_evaluates(trained: dict) -> None:
    out = trained["run"]
    assert set(out) == {"run_id", "out_dir", "state"} and out["state"] == "succeeded"
    run_dir = Path(out["out_dir"])
    for name in ("status.json", "config.json", "metrics.jsonl", "train.log", "eval.json", "samples.jsonl"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "adapter" / "adapter_config.json").exists()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "succeeded" and status["step"] == status["total"] == 4
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["lora_r"] == 8 and saved["manifest"]["version"] == "v1"
    assert len(saved["manifest"]["manifest_sha256"]) == 64 and saved["libraries"]["torch"]
    # Loss goes down: the last steps' mean is below the first steps'.
    losses = [m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert len(losses) == 4
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 * 0.9, losses
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["eval_loss"] > 0 and ev["perplexity"] > 1 and ev["n_generated"] == 2
    for side in ("base", "tuned"):
        assert {"exact_match", "token_f1", "rouge_l", "json_valid", "json_field_accuracy", "eval_loss"} <= set(ev[side])
    # Training on the task beats the untouched base model on its eval loss.
    assert ev["tuned"]["eval_loss"] < ev["base"]["eval_loss"]
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and {"reference", "base", "tuned", "prompt"} <= set(samples[0])


def test_adapter_reloads_and_generates(trained: dict) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.models import resolve_model

    adapter = Path(trained["run"]["out_dir"]) / "adapter"
    tok = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model()), str(adapter))
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "The console login page is down."}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > enc["input_ids"].shape[1]
    assert tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_run_shows_in_runs_compare_and_export(trained: dict) -> None:
    store, env, rid = trained["store"], trained["env"], trained["run"]["run_id"]
    runs = json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]
    (r,) = runs
    assert (r["run_id"], r["version"], r["state"]) == (rid, "v1", "succeeded")
    assert r["metrics"]["eval_loss"] > 0 and set(r["metrics"]["base"]) >= {"rouge_l", "json_valid"}
    assert set(r["metrics"]["tuned"]) >= {"rouge_l", "json_valid", "json_field_accuracy"}
    cmp = json.loads(run_sift("compare", rid, "--json", store=store, env=env, check=True).stdout)
    assert len(cmp["examples"]) == 2 and set(cmp["examples"][0]["tuned"]) == {rid}
    out = trained["tmp"] / "adapter-out"
    # the regression gate decides: a held run is refused without --force (nothing written)
    verdict = r["gate"]["verdict"]
    if verdict == "hold":
        refused = run_sift("export-adapter", rid[:12], "--out", str(out), store=store, env=env)
        assert refused.returncode != 0 and "regression gate holds it" in refused.stderr and "--force" in refused.stderr
        assert not out.exists()
    exp = json.loads(
        run_sift(
            "export-adapter", rid[:12], "--out", str(out), "--force", "--json", store=store, env=env, check=True
        ).stdout
    )
    assert exp["merged"] is False and {"adapter_config.json", "README.md"} <= set(exp["files"])
    card = (out / "README.md").read_text()
    assert f"**{verdict}**" in card and "smollm2-135m-instruct" in card and "Memorisation probe" in card


def test_compare_and_train_pages_show_the_run(trained: dict, monkeypatch) -> None:
    monkeypatch.setenv("SIFT_STORE", str(trained["store"]))
    for k, v in trained["env"].items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == [trained["run"]["run_id"]] and list(table["version"]) == ["v1"]
    assert any(t.value.startswith("Thanks") or t.value for t in at.text)
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=60).run()
    assert not at.exception
    assert any(m.label == "State" and m.value == "succeeded" for m in at.metric)


def test_cancel_keeps_the_saved_adapter(trained: dict) -> None:
    store, env = trained["store"], trained["env"]
    cfg = {**TINY, "max_steps": 400, "save_steps": 1}
    (trained["tmp"] / "long.json").write_text(json.dumps(cfg))
    r = run_sift(
        "train",
        str(trained["tmp"] / "export-v1"),
        "--config",
        str(trained["tmp"] / "long.json"),
        "--json",
        store=store,
        env=env,
        check=True,
    )
    started = json.loads(r.stdout)
    assert started["state"] == "queued"
    run_dir = Path(started["out_dir"])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        s = json.loads((run_dir / "status.json").read_text())
        if (s.get("step") or 0) >= 1 and (run_dir / "adapter" / "adapter_config.json").exists():
            break
        assert s["state"] in ("queued", "running"), s
        time.sleep(0.5)
    c = json.loads(run_sift("cancel", started["run_id"], "--json", store=store, env=env, check=True).stdout)
    assert c["cancel_requested"] is True
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]
        state = next(x["state"] for x in runs if x["run_id"] == started["run_id"])
        if state not in ("queued", "running"):
            break
        time.sleep(1)
    assert state == "cancelled"
    s = json.loads((run_dir / "status.json").read_text())
    assert s["step"] < 400 and (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert not (run_dir / "eval.json").exists()
    # never evaluated, so no gate verdict: its adapter is not exported without --force
    r = run_sift("export-adapter", started["run_id"], "--out", str(run_dir.parent / "x"), store=store, env=env)
    assert r.returncode != 0 and "no regression gate verdict" in r.stderr and "--force" in r.stderr
    if os.environ.get("SIFT_TEST_TIMINGS"):
        print(f"tiny run took {trained['seconds']:.1f} s")


def test_import_run_trained_elsewhere(tmp_path: Path) -> None:
    """The GPU-box workflow: freeze and export here, `python -m trainer` on the export somewhere else,
    then `sift import-run` brings the finished folder back under the version it trained on."""
    import shutil
    import subprocess
    import sys

    from curation.formats import to_dialect

    store, env = tmp_path / "sift.duckdb", {"SIFT_RUNS": str(tmp_path / "runs")}
    convs = tickets(8)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(to_dialect(c, "openai")) + "\n" for c in convs))
    run_sift("import", str(pool), "--json", store=store, check=True)
    run_sift("freeze", "v1", "--include", "not-rejected", "--eval-fraction", "0.3", "--json", store=store, check=True)
    run_sift("export", "v1", "--format", "openai", "--out", str(tmp_path / "export"), store=store, check=True)
    # extra_eval names the same export: scored on the same items after generation (which pads),
    # it must give the own split's numbers exactly.
    (tmp_path / "tiny.json").write_text(
        json.dumps({**TINY, "max_steps": 2, "eval_loss_limit": 1, "extra_eval": str(tmp_path / "export")})
    )
    remote = tmp_path / "elsewhere" / "run-a"
    cmd = [sys.executable, "-m", "trainer", "--manifest", str(tmp_path / "export"), "--config",
           str(tmp_path / "tiny.json"), "--out", str(remote), "--eval-limit", "1"]  # fmt: skip
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    before = sorted((q.relative_to(remote), q.stat().st_size) for q in remote.rglob("*"))

    # A folder still running, or not a run folder at all: refused with the file and field named.
    running = tmp_path / "running"
    shutil.copytree(remote, running)
    (running / "status.json").write_text(json.dumps({"state": "running", "step": 1}))
    r = run_sift("import-run", str(running), store=store)
    assert r.returncode != 0 and "status.json" in r.stderr and "'state'" in r.stderr and "running" in r.stderr
    r = run_sift("import-run", str(tmp_path / "export"), store=store)
    assert r.returncode != 0 and "status.json" in r.stderr

    out = json.loads(run_sift("import-run", str(remote), "--json", store=store, env=env, check=True).stdout)
    (imp,) = out["runs"]
    assert set(imp) >= {"run_id", "version", "state", "source", "out_dir"}
    assert (imp["version"], imp["state"]) == ("v1", "succeeded")
    assert Path(imp["out_dir"]).parent == tmp_path / "runs" and (Path(imp["out_dir"]) / "eval.json").exists()
    assert sorted((q.relative_to(remote), q.stat().st_size) for q in remote.rglob("*")) == before  # source untouched
    (listed,) = json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]
    ev = json.loads((remote / "eval.json").read_text())
    assert listed["run_id"] == imp["run_id"] and listed["state"] == "succeeded"
    assert listed["metrics"]["eval_loss"] == ev["eval_loss"] and listed["metrics"]["tuned"] == ev["tuned"]
    extra = listed["metrics"]["extra_eval"]
    assert extra["version"] == "v1" and extra["eval_loss"] == pytest.approx(ev["eval_loss"], rel=1e-5)
    assert extra["tuned"]["json_field_accuracy"] == ev["tuned"]["json_field_accuracy"]
    cmp = json.loads(run_sift("compare", imp["run_id"], "--json", store=store, env=env, check=True).stdout)
    assert len(cmp["examples"]) == 1 and set(cmp["examples"][0]["tuned"]) == {imp["run_id"]}

    # The same folder again (a copy of it too): refused, nothing added.
    shutil.copytree(remote, tmp_path / "copy")
    r = run_sift("import-run", str(tmp_path / "copy"), store=store, env=env)
    assert r.returncode != 0 and f"already imported as run {imp['run_id']}" in r.stderr
    assert len(json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]) == 1

    # Another store: without v1 it is refused; with a different v1 (other data), the hash mismatch is named.
    other = tmp_path / "other.duckdb"
    r = run_sift("import-run", str(remote), store=other, env=env)
    assert r.returncode != 0 and "'v1'" in r.stderr and "not frozen in this store" in r.stderr
    pool2 = tmp_path / "pool2.jsonl"
    pool2.write_text("".join(json.dumps(to_dialect(c, "openai")) + "\n" for c in tickets(12)[8:]))
    run_sift("import", str(pool2), store=other, check=True)
    run_sift("freeze", "v1", "--include", "not-rejected", "--eval-fraction", "0.3", store=other, check=True)
    r = run_sift("import-run", str(remote), store=other, env=env)
    assert r.returncode != 0 and "manifest.manifest_sha256" in r.stderr and "other data" in r.stderr
    assert json.loads(run_sift("runs", "--json", store=other, env=env, check=True).stdout)["runs"] == []


def test_checkpoints_gate_forgetting_and_memorisation(trained: dict) -> None:
    """Issue 20 on the fixture's run: per-checkpoint metrics, best checkpoint on the own eval split, the
    gate recomputed from the samples, forgetting on the shipped generic set, the memorisation probe;
    in `sift runs --json`, on Compare; a held run's export refused (forced or shipped otherwise)."""
    store, env, rid = trained["store"], trained["env"], trained["run"]["run_id"]
    run_dir = Path(trained["run"]["out_dir"])
    # Other tests of this module add runs to the fixture's store: take the fixture's own.
    runs = json.loads(run_sift("runs", "--json", store=store, env=env, check=True).stdout)["runs"]
    (r,) = [x for x in runs if x["run_id"] == rid]
    # checkpoint harness: step 2 (save_steps) and the end (step 4), on the same first eval prompt
    assert [c["step"] for c in r["checkpoints"]] == [2, 4]
    assert all(c["eval_loss"] > 0 and "rouge_l" in c for c in r["checkpoints"])
    assert r["checkpoints"][-1]["eval_loss"] == r["metrics"]["eval_loss"]
    assert (run_dir / "checkpoints" / "step-2" / "adapter_config.json").exists()
    best = r["best_checkpoint"]
    assert best["metric"] == "eval_loss" and best["value"] == min(c["eval_loss"] for c in r["checkpoints"])
    curve = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(c.get("checkpoint") == "checkpoints/step-2" for c in curve)  # the live curve has it too
    # gate: keys as the issue gives them, and the verdict follows from the per-case scores
    g = r["gate"]
    assert set(g) >= {"verdict", "regressed", "cases", "threshold", "against"} and g["against"] == "base"
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    from trainer.gate import key_score

    worse = [s["index"] for s in samples if key_score(s["tuned_scores"]) < key_score(s["base_scores"]) - 1e-9]
    assert (g["cases"], g["regressed"], g["regressed_cases"]) == (2, len(worse), worse)
    assert g["verdict"] == ("hold" if len(worse) / 2 > 0.02 else "ship") and g["threshold"] == 0.02
    # against itself is refused; the threshold can be raised (then it ships)
    assert "against itself" in run_sift("gate", rid, "--against", rid, store=store, env=env).stderr
    shipped = json.loads(run_sift("gate", rid, "--threshold", "1", "--json", store=store, env=env, check=True).stdout)
    assert shipped["verdict"] == "ship" and shipped["regressed"] == g["regressed"]
    run_sift("gate", rid, "--threshold", "0.02", store=store, env=env, check=True)
    # forgetting guard: the generic set's eval split, base vs tuned
    fg = r["forgetting"]
    assert fg["version"] == "generic" and fg["n"] == 2  # --eval-limit 2 applies to it too
    assert fg["eval_loss"]["delta"] == pytest.approx(fg["eval_loss"]["tuned"] - fg["eval_loss"]["base"], abs=1e-4)
    assert (run_dir / "generic_eval_samples.jsonl").exists()
    # memorisation probe: two training answers cut and continued by both models
    mem = r["memorization"]
    assert mem["probed"] == 2 and 0 <= mem["extracted_exact"] <= mem["extracted_near"] <= 2
    assert set(mem["base"]) == {"extracted_exact", "extracted_near", "pii_emitted"}
    # Trained from an export folder, not a version of the store: no list of PII strings reached the run,
    # so the probe says "not checked" (None), never "none emitted" (0).
    assert mem["pii_emitted"] is None and mem["base"]["pii_emitted"] is None
    assert not (run_dir / "pii_strings.json").exists()


def test_compare_page_shows_verdict_forgetting_memorisation_and_checkpoints(trained: dict, monkeypatch) -> None:
    monkeypatch.setenv("SIFT_STORE", str(trained["store"]))
    for k, v in trained["env"].items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60).run()
    assert not at.exception
    ship = next(f.value for f in at.dataframe if "verdict" in f.value.columns)
    assert list(ship["run"]) == [trained["run"]["run_id"]] and ship["verdict"][0] in ("ship", "hold")
    assert {"generic eval loss Δ", "extracted exact", "PII emitted", "regressed cases"} <= set(ship.columns)
    assert any(s.label == "Checkpoint metric" for s in at.selectbox)  # the metrics-over-steps chart
