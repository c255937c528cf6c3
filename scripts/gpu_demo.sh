#!/usr/bin/env bash
# The proof-of-value demo's training on the GPU machine (device tool), in consecutive calls on the
# warm machine (see scripts/gpu_prepare.sh demo-pack for what each carries):
#   bash scripts/gpu_demo.sh prep    # carry .gpu/demo1: the first part of site + model
#   bash scripts/gpu_demo.sh start   # carry .gpu/demo2: the rest and the bundle; unpack, convert the model,
#                                    # start every job of jobs.json (in a session of its own, so it
#                                    # outlives the call), wait up to WAIT_S, then pack what ended into $OUT
#   bash scripts/gpu_demo.sh wait    # later calls: wait up to WAIT_S more, pack into $OUT
# $OUT gets runs.tar.xz (every run folder without its adapter weights, refreshed every 20 s), jobs.log, gpu.txt, smi.txt.
# jobs.json (scripts/demo.py --bundle) holds raw and curated per training seed and each leave-one-step-out
# version (`sift ablate`) per ablation seed: 16 jobs with --full, all sharing the one GPU.
# PARALLEL jobs run at once (default: as many as the GPU's free memory holds at ~12 GiB each).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
MODE=${1:?prep, start or wait}
OUT=${OUT:-/tmp/sift-out}
WAIT_S=${WAIT_S:-540}
DEST=${SIFT_GPU_DIR:-/tmp/sift-gpu}
WORK=/tmp/sift-demo
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false SIFT_CACHE=/tmp/sift-cache
# Up to ~18 trainers share the machine's 16 cores: a few CPU threads each, not torch's 16.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

snapshot() {
  # What has ended so far into $OUT, each file replaced whole (write, then rename): a call stopped at
  # its limit still brings back the last snapshot.
  [ -d "$WORK/bundle/runs" ] || return 0
  tar -C "$WORK/bundle" --exclude='adapter' --exclude='checkpoint-*' -cf - runs | xz -T0 -3 > "$OUT/.runs.tar.xz" \
    && mv "$OUT/.runs.tar.xz" "$OUT/runs.tar.xz"
  cp "$WORK/jobs.log" "$OUT/.jobs.log" 2>/dev/null && mv "$OUT/.jobs.log" "$OUT/jobs.log"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
  nvidia-smi --query-gpu=utilization.gpu,memory.used,power.draw --format=csv,noheader >> "$OUT/smi.txt" 2>&1
  true
}

pack_results() {
  [ -d "$WORK/bundle/runs" ] || { echo "no runs yet"; return; }
  snapshot
  for s in "$WORK"/bundle/runs/*/status.json; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-2], d.get('state'), d.get('step'), d.get('total'), d.get('message'))" "$s"
  done
}

wait_jobs() {
  local t0=$SECONDS
  local last=$SECONDS
  while [ ! -f "$WORK/DONE" ] && (( SECONDS - t0 < WAIT_S )); do
    sleep 5
    if (( SECONDS - last >= ${SNAPSHOT_S:-20} )); then snapshot; last=$SECONDS; fi
  done
  [ -f "$WORK/DONE" ] && echo "all jobs ended" || echo "still running after ${WAIT_S} s"
  tail -5 "$WORK/jobs.log" 2>/dev/null
  pack_results
}

start_jobs() {
  # The supervisor: every job in its own process, PARALLEL at a time; DONE when all have ended.
  # Default PARALLEL: as many as fit in the GPU's free memory at ~12 GiB a job (the 135M QLoRA job
  # peaks near 9 GiB without checkpointing, DoRA near 14): 18 at once on an 80 GiB H100 ran out of memory.
  if [ -z "${PARALLEL:-}" ]; then
    local free
    free=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits 2>/dev/null | head -1)
    PARALLEL=$(( ${free:-24000} / 12288 )); (( PARALLEL < 1 )) && PARALLEL=1
    echo "PARALLEL=$PARALLEL (free GPU memory ${free:-?} MiB)"
  fi
  export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
    setsid nohup python3 - "$WORK" "$PARALLEL" >> "$WORK/jobs.log" 2>&1 <<'PY' &
import json, os, subprocess, sys, time
work, parallel = sys.argv[1], int(sys.argv[2])
bundle = os.path.join(work, "bundle")
jobs = json.load(open(os.path.join(bundle, "jobs.json")))
parallel = parallel or len(jobs)
done = lambda j: '"state": "succeeded"' in (open(os.path.join(bundle, j["out"], "status.json")).read() if os.path.exists(os.path.join(bundle, j["out"], "status.json")) else "")
only = [x for x in os.environ.get("ONLY", "").split(",") if x]
todo, live, t0 = [j for j in jobs if not done(j) and (not only or j["name"] in only)], {}, time.time()
while todo or live:
    while todo and len(live) < parallel:
        j = todo.pop(0)
        os.makedirs(os.path.join(bundle, j["out"]), exist_ok=True)
        log = open(os.path.join(bundle, j["out"] + ".log"), "wb")
        cmd = [sys.executable, "-m", "trainer", "--manifest", j["manifest"], "--config", j["config"], "--out", j["out"]]
        live[j["name"]] = subprocess.Popen(cmd, cwd=bundle, stdout=log, stderr=subprocess.STDOUT)
        print(f"{time.time() - t0:7.1f} s  start {j['name']}", flush=True)
    for name, p in list(live.items()):
        if p.poll() is not None:
            print(f"{time.time() - t0:7.1f} s  end {name} rc {p.returncode}", flush=True)
            del live[name]
    time.sleep(2)
open(os.path.join(work, "DONE"), "w").write(f"{time.time() - t0:.1f}\n")
print(f"{time.time() - t0:7.1f} s  all ended", flush=True)
PY
}

case "$MODE" in
  prep)
    bash scripts/gpu_prepare.sh unpack .gpu/demo1 2>&1 | tail -2
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
    ;;
  start)
    bash scripts/gpu_prepare.sh unpack .gpu/demo2 2>&1 | tail -2
    # Wheels the device image lacks that Sift's own code imports (orjson, curation/records.py).
    for w in .gpu/demo2/*.whl; do [ -f "$w" ] && python3 -m zipfile -e "$w" "$DEST/site"; done
    rm -rf "$WORK" && mkdir -p "$WORK"
    tar -C "$WORK" -xJf .gpu/demo2/bundle.tar.xz
    mv "$WORK"/*/ "$WORK/bundle" 2>/dev/null || true
    # The job folders as the bundle made them (pii_strings.json for the memorisation probe): `rerun`
    # starts a failed job from this copy, never from an empty folder.
    cp -r "$WORK/bundle/runs" "$WORK/runs.pristine"
    export PYTHONPATH="$DEST/site:$REPO"
    python3 -c "from curation.models import resolve_model; print('model', resolve_model())" 2>&1 | tail -1
    start_jobs
    sleep 20
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    wait_jobs
    ;;
  wait)
    wait_jobs
    ;;
  rerun)
    # Same warm machine: start again the jobs that did not succeed (their folders are replaced).
    export PYTHONPATH="$DEST/site:$REPO"
    for d in "$WORK"/bundle/runs/*/; do
      if ! grep -q '"state": "succeeded"' "$d/status.json" 2>/dev/null; then
        rm -rf "$d" "${d%/}.log"
        cp -r "$WORK/runs.pristine/$(basename "$d")" "$d"
      fi
    done
    rm -f "$WORK/DONE"
    start_jobs
    sleep 20
    wait_jobs
    ;;
  *) echo "usage: $0 prep|start|wait" >&2; exit 2 ;;
esac
