//! The Python `statsd` client (PyPI) sends counters, gauges, timers and sets to Augur's StatsD
//! listener; each interval's aggregate arrives as one point per metric with the right values.

use std::process::Command;
use std::time::{Duration, Instant};

use augur_suite::{http, metric, raw_rows, venv_python, AugurServer, TempDir};

/// Sends one pipeline (as few datagrams as fit): all of it lands in one flush interval.
const CLIENT: &str = r#"
import sys, statsd
client = statsd.StatsClient(sys.argv[1], int(sys.argv[2]), prefix="shop")
with client.pipeline() as pipe:
    pipe.incr("orders", 2)
    pipe.incr("orders", 4)
    pipe.gauge("queue", 40)
    pipe.gauge("queue", 2, delta=True)
    for ms in (10, 20, 30, 40):
        pipe.timing("latency", ms)
    for user in ("ann", "bob", "ann"):
        pipe.set("users", user)
    pipe.incr("bad name|with a pipe")
"#;

#[test]
fn the_python_statsd_client_is_aggregated_per_interval() {
    let server = AugurServer::start_with_env(
        &["--statsd-addr", "127.0.0.1:0"],
        &[("AUGUR_STATSD__FLUSH_INTERVAL", "500ms"), ("AUGUR_STATSD__PERCENTILES", "[50.0, 90.0]")],
    );
    let statsd = server.statsd.expect("the StatsD listener is on");
    let output = Command::new(venv_python())
        .args(["-c", CLIENT, &statsd.ip().to_string(), &statsd.port().to_string()])
        .output()
        .expect("run the statsd client");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = http(server.http, "GET", "/metrics", b"");
        let accepted = metric(&metrics, "augur_ingest_points_accepted_total{protocol=\"statsd\"}").unwrap_or(0);
        if accepted >= 4 {
            assert_eq!(accepted, 4, "{metrics}");
            // The line with a `|` in its name is refused, and counted.
            let refused = metric(&metrics, "augur_ingest_lines_rejected_total{protocol=\"statsd\",reason=\"invalid\"}");
            assert_eq!(refused, Some(1), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "the StatsD points never arrived: {accepted}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());

    let one = |measurement: &str, kind: &str| {
        let rows = raw_rows(&data.0, measurement);
        assert_eq!(rows.len(), 1, "{measurement}: {rows:?}");
        assert_eq!(rows[0]["metric_type"], kind, "{rows:?}");
        rows.into_iter().next().unwrap()
    };
    assert_eq!(one("shop.orders", "counter")["value"].as_f64(), Some(6.0));
    assert_eq!(one("shop.queue", "gauge")["value"].as_f64(), Some(42.0));
    assert_eq!(one("shop.users", "set")["value"].as_f64(), Some(2.0));
    let latency = one("shop.latency", "timing");
    let fields: Vec<_> =
        ["count", "sum", "mean", "lower", "upper", "p50", "p90"].iter().map(|f| latency[*f].as_f64()).collect();
    assert_eq!(fields, [4.0, 100.0, 25.0, 10.0, 40.0, 20.0, 40.0].map(Some), "{latency:?}");
}
