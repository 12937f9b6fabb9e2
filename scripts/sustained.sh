#!/usr/bin/env bash
# Sustained ingest side by side: Augur, then VictoriaMetrics 1.79, then InfluxDB 1.6 (Debian
# packages), one after the other, each loaded for SECONDS by `augur loadgen --report-every 10s`
# with the same data, bound to 127.0.0.1. Prints every engine's acknowledged values/s, requests,
# 503s and RSS per 10 s, then one summary table: mean values/s over the whole run and over its
# second half, requests shed, peak RSS.
#
#   scripts/sustained.sh [SECONDS] [loadgen args...]        (default 180 s and the design's load)
#   ENGINES="augur victoria-metrics" scripts/sustained.sh 600
#
# Needs: `cargo build --release`; `apt-get install victoria-metrics influxdb` for the peers (an
# engine whose binary is missing is skipped with a message saying what to install). Every process
# it starts is stopped by pid before the next engine.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-180}"
shift || true
loadgen_args=("$@")
name=sustained
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
engines="${ENGINES:-augur victoria-metrics influxdb}"
results="$work/results"
mkdir -p "$results"

# Prints loadgen's interval lines as they come.
print_interval=$(cat <<'PY'
import json, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue  # loadgen's summary for people
    r = json.loads(line)
    if "end_s" in r:
        print(f"  {sys.argv[1]:>16} {r['end_s']:6.0f}s {r['values_per_s'] / 1e6:7.3f}M values/s "
              f"{r['requests']:5} requests {r['shed']:5} shed  p99 {r['p99_ms']:8.1f} ms", flush=True)
PY
)

# Loads the server `pid` at `url` for `seconds`, writing loadgen's interval lines and an RSS
# sample per second to `results/<engine>.*`, then stops the server.
sustain() {  # engine url
  local engine=$1 url=$2 sampler
  ( while kill -0 "$pid" 2>/dev/null; do
      awk -v t="$(date +%s.%N)" '/VmRSS/ {print t, $2 / 1024}' "/proc/$pid/status" 2>/dev/null || true
      sleep 1
    done ) > "$results/$engine.rss" &
  sampler=$!
  "$augur" loadgen --url "$url" --duration "${seconds}s" --report-every 10s --json "${loadgen_args[@]}" \
    | tee "$results/$engine.jsonl" | python3 -c "$print_interval" "$engine"
  echo "$(peak_rss_mib "$pid")" > "$results/$engine.peak"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
}

for engine in $engines; do
  case $engine in
    augur)
      "$augur" serve --data-dir "$work/augur" --http-addr 127.0.0.1:18186 --tcp-addr 127.0.0.1:18194 \
        > "$work/augur.log" 2>&1 &
      pid=$!
      wait_http http://127.0.0.1:18186/ping
      sustain augur http://127.0.0.1:18186
      ;;
    victoria-metrics)
      if ! command -v victoria-metrics >/dev/null; then
        echo "victoria-metrics skipped: apt-get install victoria-metrics"; continue
      fi
      victoria-metrics -httpListenAddr 127.0.0.1:18428 -storageDataPath "$work/vm" > "$work/vm.log" 2>&1 &
      pid=$!
      wait_http http://127.0.0.1:18428/health
      sustain victoria-metrics "http://127.0.0.1:18428/write?precision=ns"
      ;;
    influxdb)
      if ! command -v influxd >/dev/null; then
        echo "influxdb skipped: apt-get install influxdb"; continue
      fi
      start_influxdb
      sustain influxdb "http://127.0.0.1:18086/write?db=bench&precision=ns"
      ;;
    *) echo "unknown engine $engine (augur, victoria-metrics, influxdb)" >&2; exit 2 ;;
  esac
done

python3 - "$results" "$seconds" $engines <<'PY'
import json, os, sys
results, seconds, engines = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
print()
print("| engine | mean values/s, whole run | mean values/s, second half | requests shed (503) | peak RSS |")
print("|---|---|---|---|---|")
for engine in engines:
    path = os.path.join(results, engine + ".jsonl")
    if not os.path.exists(path):
        continue
    rows = [json.loads(l) for l in open(path) if l.startswith("{")]
    intervals = [r for r in rows if "end_s" in r]
    total = next(r for r in rows if "values_total" in r)
    half = [r for r in intervals if r["end_s"] > seconds / 2 + 1]
    second_half = sum(r["values_per_s"] for r in half) / max(len(half), 1)
    lo = min((r["values_per_s"] for r in half), default=0)
    hi = max((r["values_per_s"] for r in half), default=0)
    peak = float(open(os.path.join(results, engine + ".peak")).read() or 0)
    print(f"| {engine} | {total['values_per_s']/1e6:.2f}M | **{second_half/1e6:.2f}M** "
          f"(10-s samples {lo/1e6:.2f}–{hi/1e6:.2f}M) | {total['shed']} of {total['requests']} "
          f"({100*total['shed']/max(total['requests'],1):.0f} %) | {peak/1024:.2f} GiB |")
PY
