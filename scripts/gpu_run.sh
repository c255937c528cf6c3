#!/usr/bin/env bash
# What the device machine runs (see scripts/gpu_prepare.sh for how the wheels and model get there).
#   bash scripts/gpu_run.sh smoke   # call 1 (carry .gpu/call1): unpack, versions, both backends on a tiny random model
#   bash scripts/gpu_run.sh full    # call 2 (carry .gpu/call2): unpack the rest, convert SmolLM2,
#                                   # the gpu tests (both backends end to end); the benchmark is scripts/gpu_bench.sh
# Results go to $OUT (the device tool brings that folder back).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?smoke or full}
OUT=${OUT:-/tmp/sift-out}
mkdir -p "$OUT"
DEST=${SIFT_GPU_DIR:-/tmp/sift-gpu}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false SIFT_CACHE=/tmp/sift-cache
PY=python3

if [ "$MODE" = smoke ]; then bash scripts/gpu_prepare.sh unpack .gpu/call1 2>&1 | tail -3; fi
if [ "$MODE" = full ]; then bash scripts/gpu_prepare.sh unpack .gpu/call2 2>&1 | tail -3; fi
SITE="$DEST/site"
[ -d "$SITE" ] || SITE="$DEST/site-early"
export PYTHONPATH="$SITE:$PWD:$PWD/datasets"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY - <<'EOF'
import importlib.metadata as m
print({n: m.version(n) for n in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "unsloth", "unsloth_zoo")})
EOF

smoke() {
  # Both backends, a few steps on a 2-layer random model with SmolLM2's tokenizer: API checks only.
  $PY - <<'EOF'
import json, os, subprocess, sys, time
from pathlib import Path
from curation.formats import map_openai
from tickets import generate_conversations
from trainer.manifest import write_export
convs = [map_openai(r)[0] for r in generate_conversations(40, seed=1)]
export = write_export("/tmp/smoke/export", convs[:32], convs[32:], version="smoke").parent
out = Path(os.environ["OUT"])
for backend in ("hf", "unsloth"):
    for packing in (False, True):
        name = f"{backend}{'-packing' if packing else ''}"
        cfg = {"backend": backend, "base_model": os.environ["SIFT_GPU_DIR_TINY"], "max_steps": 6, "packing": packing,
               "per_device_train_batch_size": 4, "max_seq_len": 512, "logging_steps": 1, "eval_limit": 4,
               "max_new_tokens": 16, "evaluate": not packing}
        Path(f"/tmp/smoke/{name}.json").write_text(json.dumps(cfg))
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "trainer", "--manifest", str(export), "--config", f"/tmp/smoke/{name}.json",
                            "--out", f"/tmp/smoke/{name}"], capture_output=True, text=True, timeout=240)
        st = json.loads(Path(f"/tmp/smoke/{name}/status.json").read_text())
        print(name, st.get("state"), round(time.time() - t, 1), "s", st.get("summary"), st.get("error"), flush=True)
        if st.get("state") != "succeeded":
            (out / f"smoke-{name}.log").write_text(r.stdout[-20000:] + r.stderr[-20000:])
EOF
}

full() {
  local t0=$SECONDS
  $PY -c "from curation.models import resolve_model; print('model', resolve_model())" 2>&1 | tail -1
  echo "convert: $((SECONDS - t0)) s"
  SIFT_GPU_OUT="$OUT" SIFT_GPU_STEPS=${SIFT_GPU_STEPS:-30} timeout 330 $PY -m pytest -q -o addopts="" -p no:cacheprovider \
    -m gpu tests/test_trainer_gpu.py 2>&1 | tail -15
  echo "gpu tests: $((SECONDS - t0)) s"
  # The throughput benchmark (bench/bench_train.py, 1B/8B/Gemma shapes) runs longer than one call:
  # scripts/gpu_bench.sh starts it as one invocation that later calls watch.
  echo "total: $((SECONDS - t0)) s"
}

export SIFT_GPU_DIR_TINY="$DEST/tiny"
export OUT
"$MODE"
