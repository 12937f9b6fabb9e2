#!/usr/bin/env bash
# Ingest per protocol side by side: ROUNDS rounds, each running `augur serve` (fresh data dir,
# default config, a Graphite listener) once per protocol and loading it with `augur loadgen
# --protocol P` for SECONDS, the same fleet every time. Prints one JSON line per run (see
# scripts/bench-lib.sh); compare `values_per_s` within one run of this script.
#
#   scripts/bench-protocols.sh SECONDS ROUNDS [loadgen args...]
#   scripts/bench-protocols.sh 20 2 --hosts 100000 --fields 8 --batch 5000 --connections 4
#
# PROTOCOLS="prometheus otlp" limits the protocols (default: all that loadgen speaks).
# Needs: `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/bench-protocols.sh SECONDS ROUNDS [loadgen args...]" >&2; exit 2; }
seconds=$1 rounds=$2
shift 2
loadgen_args=("$@")
name=protocols
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
base_args=("${loadgen_args[@]}")

for round in $(seq "$rounds"); do
  for protocol in ${PROTOCOLS:-http tcp prometheus otlp jsonlines collectd graphite}; do
    "$augur" serve --data-dir "$work/$protocol-$round" --http-addr 127.0.0.1:18186 \
      --tcp-addr 127.0.0.1:18194 --graphite-addr 127.0.0.1:18103 > "$work/$protocol-$round.log" 2>&1 &
    pid=$!
    wait_http http://127.0.0.1:18186/ping
    case $protocol in
      tcp) url=tcp://127.0.0.1:18194 ;;
      graphite) url=tcp://127.0.0.1:18103 ;;
      *) url=http://127.0.0.1:18186 ;;
    esac
    loadgen_args=("${base_args[@]}" --protocol "$protocol")
    measure "augur-$protocol" "$url"
    rm -rf "${work:?}/$protocol-$round"
  done
done
