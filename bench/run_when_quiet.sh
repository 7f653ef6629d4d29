#!/bin/bash
# Runs the CPU end-to-end benchmarks once the machine is quiet: on a shared
# 2-core box other processes halve or worse every 2-thread figure, so this
# waits until the 1-minute load average is below MAX_LOAD, then runs
# `quarrel bench --membw` and pp/tg on each model, with the best kernel table
# and with the AVX2 one (what an AVX2-only x86-64 runs), logging to OUT_DIR.
#
#   bench/run_when_quiet.sh BUILD_DIR MODEL_DIR OUT_DIR [MAX_LOAD] [RUNS]
#
# MODEL_DIR holds smollm2-135m-{f16,q8_0,q4_0}.gguf (quarrel synth + quantize).
set -u
build=$1 models=$2 out=$3 max_load=${4:-1.0} runs=${5:-1}
mkdir -p "$out"
done_runs=0
while [ "$done_runs" -lt "$runs" ]; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk "BEGIN{exit !($load < $max_load)}"; then
    # A copy, so that a rebuild during the run cannot change the binary.
    cp "$build/quarrel" "$out/quarrel-snapshot"
    q=$out/quarrel-snapshot
    log=$out/quiet-$(date +%H%M%S).log
    { echo "start load $load $(date -u)"
      "$q" bench --membw
      for t in f16 q8_0 q4_0; do "$q" bench -m "$models/smollm2-135m-$t.gguf" -p 128 -n 64 -r 5 -t 2; done
      for t in f16 q8_0 q4_0; do "$q" bench -m "$models/smollm2-135m-$t.gguf" -p 128 -n 64 -r 3 -t 2 --isa avx2; done
      echo "end load $(cut -d' ' -f1-3 /proc/loadavg) $(date -u)"; } > "$log" 2>&1
    done_runs=$((done_runs + 1))
    [ "$done_runs" -lt "$runs" ] && sleep 600
  else
    sleep 20
  fi
done
