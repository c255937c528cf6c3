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
MODE=${1:?pack, start SECONDS, wait SECONDS or restart SECONDS}
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
    if (( n > seen )); then sed -n "$((seen + 1)),${n}p" "$W/bench.log" | grep -E '^\{|^\||^####|^built|TFLOP|Traceback|Error|EXIT' | cut -c1-600; seen=$n; fi
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
    export SIFT_BENCH_TOKENIZER="$W/tok" SIFT_BENCH_MODELS="$W/models" SIFT_BENCH_OUT="$W/out"
    export SIFT_BENCH_SHAPES=${SIFT_BENCH_SHAPES:-llama-8b,llama-1b,gemma3-1b}
    python3 -c "import importlib.metadata as m; print({n: m.version(n) for n in ('torch','transformers','peft','trl','bitsandbytes','unsloth','liger_kernel','triton')})"
    setsid nohup bash -c "echo \$\$ > $W/pid; python3 bench/bench_train.py > $W/bench.log 2>&1; echo EXIT \$? >> $W/bench.log" \
      > /dev/null 2>&1 < /dev/null &
    sleep 5
    watch "${2:-500}"
    ;;
  wait) watch "${2:-570}" ;;
  *) echo "usage: $0 pack|start SECONDS|wait SECONDS" >&2; exit 2 ;;
esac
