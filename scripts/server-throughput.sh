#!/usr/bin/env bash
# Generated tokens per second of `quarrel serve` with one client and with N
# concurrent clients (greedy completions, loopback, curl only), so it runs on
# the GPU machine too, which has no npm packages.
#   scripts/server-throughput.sh MODEL [N=32] [MAX_TOKENS=256] [-- extra serve flags]
# Prints each run's tokens, seconds and t/s, and the server's forward-pass
# metrics after the single-client and the N-client runs.
set -uo pipefail
model=${1:?usage: scripts/server-throughput.sh MODEL [N] [MAX_TOKENS] [-- serve flags]}
n=${2:-32}
max_tokens=${3:-256}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
bin=${QUARREL:-build/quarrel}
port=${PORT:-8090}
url=http://127.0.0.1:$port
log=$(mktemp)
out=$(mktemp -d)
"$bin" serve -m "$model" --parallel "$n" -c $((n * (max_tokens + 64))) --port "$port" --max-queue $((4 * n)) "$@" \
  >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$out" "$log"' EXIT
for _ in $(seq 300); do curl -s -m 2 --noproxy '*' "$url/health" >/dev/null && break; sleep 0.2; done

run() {
  local clients=$1 pids=() start end
  rm -f "$out"/r*.json
  start=$(date +%s.%N)
  for i in $(seq "$clients"); do
    curl -s -m 600 --noproxy '*' -X POST "$url/v1/completions" -H 'Content-Type: application/json' \
      -d "{\"prompt\":\"Once upon a time, story number $i\",\"max_tokens\":$max_tokens,\"temperature\":0}" \
      >"$out/r$i.json" &
    pids+=($!)
  done
  wait "${pids[@]}"
  end=$(date +%s.%N)
  python3 - "$clients" "$start" "$end" "$out" <<'PY'
import glob, json, sys
clients, start, end, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
tokens = 0
for f in glob.glob(out + "/r*.json"):
    reply = json.load(open(f))
    if "usage" not in reply:
        print("error:", reply)
        continue
    tokens += reply["usage"]["completion_tokens"]
print(f"clients={clients} tokens={tokens} seconds={end - start:.3f} t/s={tokens / (end - start):.0f}")
PY
}
metrics() {
  curl -s -m 5 --noproxy '*' "$url/metrics" |
    grep -E '^quarrel_(forward_seconds|batch_tokens)_(sum|count)' | tr '\n' ' '
  echo
}
run 1; run 1; metrics
run "$n"; run "$n"; metrics
kill -TERM $pid; wait $pid
