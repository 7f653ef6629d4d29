#!/usr/bin/env bash
# One call on the GPU machine: build (or use a prebuilt tree), run the CUDA
# tests, then benchmark decode and prefill on synthetic models.
#   scripts/gpu-check.sh [BUILD_DIR]
# BUILD_DIR defaults to /tmp/quarrel-gpu-build, outside the repo copy. If it
# already holds quarrel and quarrel_tests (built elsewhere for sm_90), they are
# used as they are. Results go to $OUT when it is set.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-/tmp/quarrel-gpu-build}
out=${OUT:-/tmp/quarrel-gpu-out}
mkdir -p "$out"
if [ ! -x "$build/quarrel" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DQUARREL_CUDA_ARCH=90 -DQUARREL_CUDA=ON \
    -DQUARREL_BENCH=OFF >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
  cmake --build "$build" -j "$(nproc)" --target quarrel quarrel_tests >"$out/build.log" 2>&1 ||
    { grep -E 'error' "$out/build.log" | head -30; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"

echo "== CUDA tests"
"$build/quarrel_tests" --gtest_filter='Cuda*:*Reference*cuda*' 2>&1 | tee "$out/tests.log" | grep -E 'OK|FAILED|Failure|relative L2|Which is|expected|SKIP' | head -80

echo "== benchmarks"
models=/tmp/quarrel-models
mkdir -p $models
q="$build/quarrel"
[ -f $models/smol-f16.gguf ] || $q synth --shape smollm2-135m --vocab tests/data/vocab/vocab-starcoder.gguf --type f16 -o $models/smol-f16.gguf
[ -f $models/smol-q8_0.gguf ] || $q quantize $models/smol-f16.gguf $models/smol-q8_0.gguf q8_0
[ -f $models/smol-q4_0.gguf ] || $q quantize $models/smol-f16.gguf $models/smol-q4_0.gguf q4_0
if [ -f tests/data/vocab/vocab-llama3.gguf ]; then
  [ -f $models/l1b-f16.gguf ] || $q synth --shape llama-3.2-1b --vocab tests/data/vocab/vocab-llama3.gguf --type f16 -o $models/l1b-f16.gguf
  [ -f $models/l1b-q4_0.gguf ] || $q quantize $models/l1b-f16.gguf $models/l1b-q4_0.gguf q4_0
fi
for m in smol-f16 smol-q8_0 smol-q4_0 l1b-f16 l1b-q4_0; do
  [ -f $models/$m.gguf ] || continue
  $q bench -m $models/$m.gguf --backend cuda -p 512 -n 128 -r 5 -o md 2>&1 | tee -a "$out/bench.md" | grep -E '^\|' | tail -2
done

echo "== server: one client, then 32 concurrent greedy clients (issue 6's CUDA figure)"
QUARREL=$q scripts/server-throughput.sh $models/smol-f16.gguf 32 256 -- --backend cuda 2>&1 | tee "$out/server.txt"
