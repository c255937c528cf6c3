#!/usr/bin/env bash
# bench/bench_train.py on the device machine as ONE invocation that outlives a single call (the
# device tool stops a command at 10 minutes; a process in its own session runs on while the machine
# is held, so consecutive calls within the warm window watch the same run).
#
# Here (this machine), once: scripts/gpu_bench.sh pack   → .gpu/b23/{site.tar.xz,tok,code.tar.xz}
#   site.tar.xz: the wheels of scripts/gpu_prepare.sh plus liger-kernel, unpacked into one folder;
#   tok/: the embedded SmolLM2 tokenizer (the models are built at random on the GPU: no weights travel);
#   code.tar.xz: this checkout's tracked files.
# There: run(carry=[".gpu/b23"], command="bash <(tar -xJOf .gpu/b23/code.tar.xz ./scripts/gpu_bench.sh) start 540")
#        then, within the warm window, the same with `wait 570`, and so on until it prints DONE.
# Every call copies what there is so far (tables, JSON, log, profiles) into $OUT.
set -uo pipefail
MODE=${1:?pack, start SECONDS, wait SECONDS, restart SECONDS, smoke or fp8test}
CARRY=${SIFT_GPU_CARRY:-.gpu/b23}
W=/tmp/sift-bench

pack() {
  cd "$(dirname "$0")/.."
  local site=${SITE_TAR:?SITE_TAR=path of the packed site.tar.xz (see scripts/gpu_prepare.sh pack_site, plus liger_kernel)}
  local main=${MAIN:-/work/main}
  local dst="$main/$CARRY"
  rm -rf "$dst" && mkdir -p "$dst/tok"
  cp "$site" "$dst/site.tar.xz"
  local tok
  tok=$(.venv/bin/python -c "from curation.models import load_tokenizer as t; print(t().name_or_path)")
  for f in tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja; do
    [ -f "$tok/$f" ] && cp "$tok/$f" "$dst/tok/"
  done
  git ls-files -z | tar --null -T - -cf - --transform 's,^,./code/,' | xz -T2 -6 > "$dst/code.tar.xz"
  du -sh "$dst" "$dst"/*
}

copy_out() {
  [ -n "${OUT:-}" ] || return 0
  cp "$W"/out/bench_train.md "$W"/out/bench_train.json "$OUT/" 2>/dev/null
  cp "$W/bench.log" "$OUT/bench.log" 2>/dev/null
  (cd "$W/out" && ls profile-*.txt >/dev/null 2>&1 && tar -czf "$OUT/profiles.tgz" profile-*.txt) 2>/dev/null
  nvidia-smi --query-gpu=name,memory.used,utilization.gpu,power.draw --format=csv,noheader > "$OUT/smi.txt" 2>&1
  true
}

watch() {
  local limit=$1 t0=$SECONDS seen=0
  while (( SECONDS - t0 < limit )); do
    local n
    n=$(wc -l < "$W/bench.log" 2>/dev/null || echo 0)
    if (( n > seen )); then sed -n "$((seen + 1)),${n}p" "$W/bench.log" | grep -E '^\{|^\||^####|^built|^fp8_check|^gpu_test|TFLOP|Traceback|Error|EXIT' | cut -c1-2500; seen=$n; fi
    grep -q '^EXIT' "$W/bench.log" 2>/dev/null && { echo DONE; break; }
    sleep 10
  done
  copy_out
  uptime
}

case "$MODE" in
  pack) pack ;;
  restart)
    # A fix carried in a later call: stop the run this script started (its own process group), start again.
    [ -f "$W/pid" ] && kill -- -"$(cat "$W/pid")" 2>/dev/null
    sleep 3
    rm -rf "$W/code" "$W/out" "$W/bench.log" "$W/tok" "$W/pid"
    exec bash "$0" start "${2:-500}"
    ;;
  start)
    mkdir -p "$W/site" "$W/out"
    tar -C "$W" -xJf "$CARRY/code.tar.xz"
    [ -d "$W/site/trl" ] || tar -C "$W/site" -xJf "$CARRY/site.tar.xz"
    cp -r "$CARRY/tok" "$W/tok"
    nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader
    cd "$W/code"
    export PYTHONPATH="$W/site:$W/code" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
    export UNSLOTH_DISABLE_STATISTICS=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false SIFT_CACHE=/tmp/sift-cache
    # The random models (gemma3-27b: 54 GB of bf16) go where there is room: the disk, else /dev/shm.
    df -h /tmp /dev/shm | sed 1d
    local_models="$W/models"
    if (( $(df --output=avail -k /tmp | tail -1) < 62000000 )) && (( $(df --output=avail -k /dev/shm | tail -1) >= 62000000 )); then
      local_models=/dev/shm/sift-models
    fi
    export SIFT_BENCH_TOKENIZER="$W/tok" SIFT_BENCH_MODELS="${SIFT_BENCH_MODELS:-$local_models}" SIFT_BENCH_OUT="$W/out"
    echo "models in $SIFT_BENCH_MODELS"
    export SIFT_BENCH_SHAPES=${SIFT_BENCH_SHAPES:-llama-8b,llama-1b,gemma3-1b}
    python3 -c "import importlib.metadata as m; print({n: m.version(n) for n in ('torch','transformers','peft','trl','bitsandbytes','unsloth','liger_kernel','triton')})"
    # The packed-attention and FP8 tests on CUDA first (seconds; SIFT_BENCH_TESTS=0 skips them), then the bench.
    tests="true"
    [ "${SIFT_BENCH_TESTS:-1}" = 1 ] && tests="PYTHONPATH=\$PYTHONPATH:$W/code/datasets python3 -m pytest -q -p no:cacheprovider -rs ${SIFT_BENCH_TESTFILES:-tests/test_varlen.py tests/test_fp8.py tests/test_fp8_triton.py} 2>&1 | tail -12 | sed 's/^/gpu_test: /'"
    setsid nohup bash -c "echo \$\$ > $W/pid; { $tests; python3 bench/bench_train.py; } > $W/bench.log 2>&1; echo EXIT \$? >> $W/bench.log" \
      > /dev/null 2>&1 < /dev/null &
    sleep 5
    watch "${2:-500}"
    ;;
  wait) watch "${2:-570}" ;;
  fp8test)
    # The FP8 tests on the GPU: every numeric test of tests/test_fp8.py runs once more on CUDA through
    # torch's FP8 kernel (needs a pack whose site has pytest: scripts/gpu_prepare.sh lists it).
    mkdir -p "$W/site"
    rm -rf "$W/code" && tar -C "$W" -xJf "$CARRY/code.tar.xz"
    [ -d "$W/site/trl" ] || tar -C "$W/site" -xJf "$CARRY/site.tar.xz"
    cd "$W/code"
    PYTHONPATH="$W/site:$W/code:$W/code/datasets" python3 -m pytest -q -p no:cacheprovider -rs tests/test_fp8.py tests/test_fp8_triton.py 2>&1 | tail -40
    ;;
  smoke)
    # The default config end to end on a tiny random Llama (hf backend: liger, flex_attention over packed
    # rows, then evaluation and generation, which switch to sdpa).
    mkdir -p "$W/site"
    rm -rf "$W/code" && tar -C "$W" -xJf "$CARRY/code.tar.xz"
    [ -d "$W/site/trl" ] || tar -C "$W/site" -xJf "$CARRY/site.tar.xz"
    cd "$W/code"
    export PYTHONPATH="$W/site:$W/code:$W/code/datasets" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
    export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false SIFT_CACHE=/tmp/sift-cache
    python3 - "$CARRY/tok" <<'PY'
import json, shutil, subprocess, sys, time
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from curation.formats import map_openai
from tickets import generate_conversations
from trainer.manifest import write_export
tok_dir = Path(sys.argv[1]); model = Path("/tmp/smoke/model"); model.mkdir(parents=True, exist_ok=True)
tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
cfg = LlamaConfig(vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(model)
for f in tok_dir.iterdir(): shutil.copy(f, model / f.name)
convs = [map_openai(r)[0] for r in generate_conversations(48, seed=1)]
export = write_export("/tmp/smoke/export", convs[:40], convs[40:], version="smoke").parent
for backend in ("hf",):
    c = {"backend": backend, "base_model": str(model), "max_steps": 6, "logging_steps": 1, "eval_limit": 4, "max_new_tokens": 16}
    Path("/tmp/smoke/c.json").write_text(json.dumps(c)); t = time.time()
    r = subprocess.run([sys.executable, "-m", "trainer", "--manifest", str(export), "--config", "/tmp/smoke/c.json",
                        "--out", f"/tmp/smoke/{backend}"], capture_output=True, text=True, timeout=240)
    st = json.loads(Path(f"/tmp/smoke/{backend}/status.json").read_text())
    ev = json.loads(Path(f"/tmp/smoke/{backend}/eval.json").read_text()) if st.get("state") == "succeeded" else {}
    print(backend, st.get("state"), round(time.time() - t, 1), "s", json.dumps(st.get("summary")), st.get("error"))
    print("eval", {k: ev.get(k) for k in ("eval_loss", "n_generated")}, (r.stdout + r.stderr)[-1500:] if st.get("state") != "succeeded" else "")
    print([l for l in Path(f"/tmp/smoke/{backend}/train.log").read_text().splitlines() if "kernels" in l or "attention" in l][:4])
PY
    ;;
  *) echo "usage: $0 pack|start SECONDS|wait SECONDS" >&2; exit 2 ;;
esac
