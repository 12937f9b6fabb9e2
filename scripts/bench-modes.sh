#!/usr/bin/env bash
# Ingest under two settings side by side: ROUNDS alternating runs of `augur serve` with the
# environment override VAR set to A, then to B (e.g. AUGUR_WAL__DURABILITY fsync none), every run
# on a fresh data dir with the default config otherwise (Parquet on), loaded by `augur loadgen` for
# SECONDS. Prints one JSON line per run (see scripts/bench-lib.sh).
#
#   scripts/bench-modes.sh SECONDS ROUNDS VAR A B [loadgen args...]
#   scripts/bench-modes.sh 30 3 AUGUR_WAL__DURABILITY fsync none
#   scripts/bench-modes.sh 30 2 AUGUR_PREDICT__ENABLED true false
#
# Needs: `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 5 ] || { echo "usage: scripts/bench-modes.sh SECONDS ROUNDS VAR A B [loadgen args...]" >&2; exit 2; }
seconds=$1 rounds=$2 var=$3 first=$4 second=$5
shift 5
loadgen_args=("$@")
name=modes
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

for round in $(seq "$rounds"); do
  for value in "$first" "$second"; do
    env "$var=$value" "$augur" serve --data-dir "$work/$value-$round" \
      --http-addr 127.0.0.1:18186 --tcp-addr 127.0.0.1:18194 > "$work/$value-$round.log" 2>&1 &
    pid=$!
    wait_http http://127.0.0.1:18186/ping
    measure "augur-$var=$value" http://127.0.0.1:18186
    rm -rf "${work:?}/$value-$round"
  done
done
