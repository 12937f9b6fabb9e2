# Helpers of the side-by-side load scripts (sourced): the caller sets `seconds`, `loadgen_args`
# (empty: the default load below) and `name`, and starts one server at a time with its pid in
# `pid`; this sets `augur` and a fresh `work` dir.
[ ${#loadgen_args[@]} -eq 0 ] && loadgen_args=(--hosts 100000 --fields 8 --batch 5000 --connections 4)
augur=target/release/augur
[ -x "$augur" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d "/tmp/augur-$name.XXXXXX")
pid=""
# The servers listen on loopback for this script's load only; a caller may still set it to true.
export AUGUR_AUTH__ENABLED="${AUGUR_AUTH__ENABLED:-false}"
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }   # utime + stime, in ticks of 1/100 s
peak_rss_mib() { awk '/VmHWM/ {print $2 / 1024}' "/proc/$1/status"; }

wait_http() {
  for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "server at $1 did not come up" >&2; return 1
}

# Loads the server at `url` for `seconds`, prints loadgen's report plus the server's cores and
# peak RSS as one JSON line named `name`, then stops the server (SIGTERM) and waits for it.
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

# Starts InfluxDB 1.6 bound to loopback (HTTP 18086, RPC 18088) with a database `bench`; its pid in
# `pid`.
start_influxdb() {
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
}
