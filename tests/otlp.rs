//! The OpenTelemetry Python SDK (PyPI `opentelemetry-sdk` with `opentelemetry-exporter-otlp-proto-http`)
//! pushes metrics to Augur over OTLP/HTTP with a write token: every instrument kind arrives with
//! its values, its resource mapped to host and region, and the SDK saw every export succeed.

use std::process::Command;
use std::time::Duration;

use augur_suite::{http_with, metric, raw_rows, venv_python, AugurServer, TempDir};

const WRITER: &str = "otlp-writer-0123456789";
const ADMIN: &str = "otlp-admin-0123456789";

#[test]
fn the_opentelemetry_sdk_pushes_every_kind_of_metric() {
    let dir = TempDir::new("otlp");
    let config = dir.0.join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\nname = \"sdk\"\ntoken = \"{WRITER}\"\nscopes = [\"write\"]\n\
             [[auth.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n"
        ),
    )
    .unwrap();
    let server =
        AugurServer::start_with_env(&["--config", config.to_str().unwrap()], &[("AUGUR_AUTH__ENABLED", "true")]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/otlp_push.py");
    let output = Command::new(venv_python())
        .args([script, &format!("http://{}", server.http), WRITER])
        .output()
        .expect("run the OpenTelemetry SDK");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK's export failed: {stderr}");
    assert!(!stderr.contains("Failed to export"), "{stderr}");

    let (_, metrics) = http_with(server.http, "GET", "/metrics", &[("Authorization", &format!("Token {ADMIN}"))], b"");
    assert_eq!(metric(&metrics, "augur_ingest_points_accepted_total{protocol=\"otlp\"}"), Some(6), "{metrics}");
    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());

    let one = |measurement: &str| {
        let rows = raw_rows(&data.0, measurement);
        assert_eq!(rows.len(), 1, "{measurement}: {rows:?}");
        let row = rows.into_iter().next().unwrap();
        // The resource, mapped: host.name → host, cloud.region → region (the Parquet region);
        // the SDK's own name and version left out.
        assert_eq!((row["host"].as_str(), row["region"].as_str()), (Some("web1"), Some("eu-west")), "{row:?}");
        assert_eq!(row["service.name"], "shop", "{row:?}");
        assert!(!row.keys().any(|k| k.starts_with("telemetry.")), "{row:?}");
        row
    };
    let orders = one("shop.orders");
    assert_eq!((orders["total"].as_i64(), orders["payment"].as_str()), (Some(7), Some("card")), "{orders:?}");
    assert!(orders.get("temporality").is_none(), "{orders:?}");
    let queue = one("shop.queue");
    assert_eq!(queue["value"].as_i64(), Some(3), "{queue:?}");
    let latency = one("shop.latency");
    // The SDK's default bounds: 0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, ...
    let counts: Vec<_> =
        ["count", "le_0", "le_5", "le_50", "le_500", "le_750", "le_inf"].iter().map(|f| latency[*f].as_u64()).collect();
    assert_eq!(counts, [3, 0, 1, 2, 2, 3, 3].map(Some), "{latency:?}");
    assert_eq!(
        (latency["sum"].as_f64(), latency["min"].as_f64(), latency["max"].as_f64()),
        (Some(735.0), Some(5.0), Some(700.0))
    );
    let size = one("shop.size");
    assert_eq!((size["count"].as_u64(), size["sum"].as_f64()), (Some(4), Some(1007.0)), "{size:?}");
    let buckets: u64 = size.iter().filter(|(k, _)| k.starts_with("pos_")).filter_map(|(_, v)| v.as_u64()).sum();
    assert_eq!(buckets, 4, "every value in a positive bucket: {size:?}");
    assert!(size["scale"].as_i64().is_some(), "{size:?}");
    let temperature = one("shop.temperature");
    assert_eq!((temperature["value"].as_f64(), temperature["room"].as_str()), (Some(21.5), Some("a")));
    let refunds = one("shop.refunds");
    assert_eq!((refunds["total"].as_i64(), refunds["temporality"].as_str()), (Some(2), Some("delta")), "{refunds:?}");
}
