#!/usr/bin/env bash
# Ingest with `wal.durability = "fsync"` versus `"none"`, side by side: ROUNDS alternating runs
# of each, every run on a fresh data dir with Parquet on (the default config), loaded by
# `augur loadgen` for SECONDS. Prints one JSON line per run (see scripts/bench-lib.sh).
#
#   scripts/bench-durability.sh [SECONDS] [ROUNDS] [loadgen args...]
#   scripts/bench-durability.sh 30 3 --hosts 100000 --fields 8 --batch 5000 --connections 4
#
# Needs: `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
rounds="${2:-3}"
shift 2 || true
loadgen_args=("$@")
[ ${#loadgen_args[@]} -eq 0 ] && loadgen_args=(--hosts 100000 --fields 8 --batch 5000 --connections 4)
augur=target/release/augur
[ -x "$augur" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d /tmp/augur-durability.XXXXXX)
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

for round in $(seq "$rounds"); do
  for durability in fsync none; do
    AUGUR_WAL__DURABILITY=$durability "$augur" serve --data-dir "$work/$durability-$round" \
      --http-addr 127.0.0.1:18186 --tcp-addr 127.0.0.1:18194 > "$work/$durability-$round.log" 2>&1 &
    pid=$!
    wait_http http://127.0.0.1:18186/ping
    measure "augur-$durability" http://127.0.0.1:18186
    rm -rf "${work:?}/$durability-$round"
  done
done
