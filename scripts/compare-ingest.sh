#!/usr/bin/env bash
# Line-protocol ingest, side by side in one run: Augur, InfluxDB 1.6 and VictoriaMetrics 1.79
# (Debian packages), each loaded by `augur loadgen` with the same data, bound to 127.0.0.1.
# Prints one JSON line per engine: loadgen's report plus the server's CPU seconds per second of
# load (cores) and peak RSS. Every process it starts is stopped by pid before the next engine.
#
#   scripts/compare-ingest.sh [SECONDS] [loadgen args...]
#   scripts/compare-ingest.sh 20 --hosts 100000 --fields 8 --batch 5000 --connections 4
#
# Needs: `cargo build --release`; `apt-get install influxdb victoria-metrics` for the peers
# (an engine whose binary is missing is skipped with a message saying what to install).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
loadgen_args=("$@")
[ ${#loadgen_args[@]} -eq 0 ] && loadgen_args=(--hosts 100000 --fields 8 --batch 5000 --connections 4)
augur=target/release/augur
[ -x "$augur" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /tmp/augur-compare.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }   # utime + stime, in ticks of 1/100 s
peak_rss_mib() { awk '/VmHWM/ {print $2 / 1024}' "/proc/$1/status"; }

wait_http() {
  for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "server at $1 did not come up" >&2; return 1
}

measure() {  # name url
  local name=$1 url=$2 before after report
  before=$(cpu_seconds "$pid")
  report=$("$augur" loadgen --url "$url" --duration "${seconds}s" --json "${loadgen_args[@]}" | tail -n 1)
  after=$(cpu_seconds "$pid")
  python3 - "$name" "$report" "$before" "$after" "$seconds" "$(peak_rss_mib "$pid")" <<'PY'
import json, sys
name, report, before, after, seconds, rss = sys.argv[1:]
r = json.loads(report)
r = {"engine": name, **{k: r[k] for k in ("values_per_s", "points_per_s", "p50_ms", "p99_ms", "max_ms", "errors", "values_total")},
     "server_cores": round((float(after) - float(before)) / float(seconds), 2), "peak_rss_mib": round(float(rss))}
print(json.dumps(r))
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}

# Augur
"$augur" serve --data-dir "$work/augur" --http-addr 127.0.0.1:18186 --tcp-addr 127.0.0.1:18194 > "$work/augur.log" 2>&1 &
pid=$!
wait_http http://127.0.0.1:18186/ping
measure augur http://127.0.0.1:18186

# InfluxDB 1.6
if command -v influxd >/dev/null; then
  cat > "$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:18088"
[meta]
  dir = "$work/influx/meta"
[data]
  dir = "$work/influx/data"
  wal-dir = "$work/influx/wal"
  max-series-per-database = 0
  max-values-per-tag = 0
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:18086"
  log-enabled = false
  max-body-size = 0
CONF
  influxd run -config "$work/influxdb.conf" > "$work/influx.log" 2>&1 &
  pid=$!
  wait_http http://127.0.0.1:18086/ping
  curl -fsS -XPOST http://127.0.0.1:18086/query --data-urlencode 'q=CREATE DATABASE bench' > /dev/null
  measure influxdb-1.6 "http://127.0.0.1:18086/write?db=bench&precision=ns"
else
  echo '{"engine": "influxdb-1.6", "skipped": "apt-get install influxdb"}'
fi

# VictoriaMetrics
if command -v victoria-metrics >/dev/null; then
  victoria-metrics -httpListenAddr 127.0.0.1:18428 -storageDataPath "$work/vm" > "$work/vm.log" 2>&1 &
  pid=$!
  wait_http http://127.0.0.1:18428/health
  measure victoria-metrics-1.79 "http://127.0.0.1:18428/write?precision=ns"
else
  echo '{"engine": "victoria-metrics-1.79", "skipped": "apt-get install victoria-metrics"}'
fi
