#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, docs, unit, property and end-to-end tests.
# Installs what it needs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy
  else
    echo "cargo fmt and cargo clippy are needed: install rustfmt and clippy (rustup component add rustfmt clippy)" >&2
    exit 1
  fi
fi

# Installs Debian package(s) when root with apt-get; otherwise stops, saying what to install.
need_packages() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends "$@" || { apt-get update && apt-get install -y --no-install-recommends "$@"; }
  else
    echo "needed: apt-get install -y $*" >&2
    exit 1
  fi
}

step "PostgreSQL server binaries (the hot-tier tests start their own servers)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need_packages postgresql
fi

step "headless Chromium (the status-page test loads the page in a real browser)"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need_packages chromium

step "Prometheus and its node exporter (real ones scrape Augur and remote-write into it)"
command -v prometheus >/dev/null 2>&1 || need_packages prometheus
command -v prometheus-node-exporter >/dev/null 2>&1 || need_packages prometheus-node-exporter

step "collectd (a real one sends Graphite plaintext and write_http JSON to Augur)"
[ -x /usr/sbin/collectd ] || need_packages collectd-core
# collectd-core leaves its plugins' libraries to Recommends: write_http needs yajl and curl.
if ldd /usr/lib/collectd/write_http.so | grep -q 'not found'; then
  need_packages libyajl2 libcurl3-gnutls
fi

step "Python venv with the real clients (OpenTelemetry SDK, statsd, InfluxDB 1.x and 2.x) and the Parquet readers"
command -v python3 >/dev/null || { echo "python3 is needed: apt-get install -y python3 python3-venv" >&2; exit 1; }
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || { echo "cannot create a venv: apt-get install -y python3-venv" >&2; exit 1; }
fi
# Pinned: the versions the tests were written against.
"$venv/bin/pip" install --quiet --disable-pip-version-check duckdb==2.0.0 polars==2.1.0 pyarrow==26.0.1 \
  opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 statsd==4.0.1 \
  influxdb==5.3.2 influxdb-client==1.50.0
export AUGUR_TEST_PYTHON="$PWD/$venv/bin/python"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet

step "build the augur binary the end-to-end tests run"
cargo build --workspace --bins --locked

step "tests"
# One test holds 10,000 idle TCP connections: allow the descriptors the machine allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Property tests run a CI-sized number of cases; raise PROPTEST_CASES by hand for longer runs.
export PROPTEST_CASES="${PROPTEST_CASES:-256}"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

step "interop: the Parquet tree read by DuckDB, Polars and pyarrow"
"$venv/bin/python" tests/interop/parquet_readers.py target/debug/augur

step "benchmarks compile"
cargo bench --workspace --locked --no-run --quiet

echo
echo "All tests passed."
