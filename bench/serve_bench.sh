#!/usr/bin/env bash
# serve_bench.sh — continuous batching benchmark: starts `nuri serve` on a
# free port and measures aggregate generation speed with 1 and with N
# concurrent streaming requests (bench/serve_bench.mjs), then stops it.
#
#   bench/serve_bench.sh MODEL.gguf [-t THREADS] [-n CONCURRENCY] [--tokens N] [--rounds R] [--nuri BIN]
#                        [--reference] [--bandwidth BIN]
#
# Defaults: 2 threads, 4 concurrent requests in 4 slots, 64 tokens each, 3
# rounds. Prints the machine load (uptime) with the figures, since other
# processes on the machine change them. --reference also runs `nuri bench`
# for ppN and tg (the forward pass alone, no server): ppN / tg is the most
# a batch of N tokens can gain over single tokens with the current kernels.
# --bandwidth build/bandwidth (make bench-bandwidth) measures the memory
# bandwidth before and after: a single stream is bound by it, a batch much
# less, so the speed-up depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:?usage: bench/serve_bench.sh MODEL.gguf [-t THREADS] [-n CONCURRENCY] [--tokens N] [--rounds R]}
shift
threads=2 concurrency=4 tokens=64 rounds=3 nuri=build/nuri reference=0 bandwidth=
while [ $# -gt 0 ]; do
  case "$1" in
    -t) threads=$2; shift 2 ;;
    -n) concurrency=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --nuri) nuri=$2; shift 2 ;;
    --reference) reference=1; shift ;;
    --bandwidth) bandwidth=$2; shift 2 ;;
    *) echo "serve_bench.sh: unknown option $1" >&2; exit 1 ;;
  esac
done

probe_bandwidth() {
  [ -n "$bandwidth" ] && echo "bandwidth $1: $("$bandwidth" -t "$threads" | tail -n 1 | sed 's/.*reps: //')"
  return 0
}

probe_bandwidth before
log=$(mktemp)
"$nuri" serve -m "$model" --port 0 -t "$threads" --parallel "$concurrency" -c 512 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
port=
for _ in $(seq 1 600); do
  port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | sed 's/.*://' || true)
  [ -n "$port" ] && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "serve_bench.sh: the server did not start" >&2; exit 1; }

echo "model: $model ($(grep -m1 ' layers, ' "$log" | sed 's/^nuri serve: //; s/, chat template.*//'))"
echo "threads: $threads, slots: $concurrency, load before: $(uptime | sed 's/.*load average: //')"
node bench/serve_bench.mjs --url "http://127.0.0.1:$port" --concurrency "$concurrency" --tokens "$tokens" \
  --rounds "$rounds"
echo "load after: $(uptime | sed 's/.*load average: //')"
probe_bandwidth after
if [ $reference = 1 ]; then
  kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
  echo "forward pass alone (nuri bench, $threads threads):"
  "$nuri" bench -m "$model" -p "$concurrency" -n "$tokens" -t "$threads" -r "$rounds" | tail -n 2
fi
