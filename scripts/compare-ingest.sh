#!/usr/bin/env bash
# Ingest side by side in one run: Augur, InfluxDB 1.6 and VictoriaMetrics 1.79 (Debian
# packages), each loaded by `augur loadgen` with the same data, bound to 127.0.0.1. Prints one
# JSON line per engine: loadgen's report plus the server's CPU seconds per second of load (cores)
# and peak RSS. Every process it starts is stopped by pid before the next engine.
#
#   scripts/compare-ingest.sh [SECONDS] [loadgen args...]
#   scripts/compare-ingest.sh 20 --hosts 100000 --fields 8 --batch 5000 --connections 4
#   PROTOCOL=prometheus scripts/compare-ingest.sh 20
#
# PROTOCOL is `http` (line protocol, the default) or `prometheus` (remote write, which all three
# engines take).
#
# Needs: `cargo build --release`; `apt-get install influxdb victoria-metrics` for the peers
# (an engine whose binary is missing is skipped with a message saying what to install).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
loadgen_args=("$@")
name=compare
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
protocol="${PROTOCOL:-http}"
case $protocol in
  http) influx_path="/write?db=bench&precision=ns" vm_path="/write?precision=ns" ;;
  prometheus) influx_path="/api/v1/prom/write?db=bench" vm_path="/api/v1/write" ;;
  *) echo "PROTOCOL must be http or prometheus" >&2; exit 2 ;;
esac
loadgen_args+=(--protocol "$protocol")

# Augur
"$augur" serve --data-dir "$work/augur" --http-addr 127.0.0.1:18186 --tcp-addr 127.0.0.1:18194 > "$work/augur.log" 2>&1 &
pid=$!
wait_http http://127.0.0.1:18186/ping
measure augur http://127.0.0.1:18186

# InfluxDB 1.6
if command -v influxd >/dev/null; then
  start_influxdb
  measure influxdb-1.6 "http://127.0.0.1:18086$influx_path"
else
  echo '{"engine": "influxdb-1.6", "skipped": "apt-get install influxdb"}'
fi

# VictoriaMetrics
if command -v victoria-metrics >/dev/null; then
  victoria-metrics -httpListenAddr 127.0.0.1:18428 -storageDataPath "$work/vm" > "$work/vm.log" 2>&1 &
  pid=$!
  wait_http http://127.0.0.1:18428/health
  measure victoria-metrics-1.79 "http://127.0.0.1:18428$vm_path"
else
  echo '{"engine": "victoria-metrics-1.79", "skipped": "apt-get install victoria-metrics"}'
fi
