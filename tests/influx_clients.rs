//! What InfluxDB clients check besides writing: the 1.x client (PyPI `influxdb`) and the 2.x client
//! (PyPI `influxdb-client`) ping, read the version, create and list databases and retention
//! policies, check readiness and health, and write at every precision they offer; every point
//! arrives at its time. The same endpoints are checked by hand for what the clients do not send:
//! Telegraf's form-encoded `CREATE DATABASE`, several statements at once, refusals.

use std::process::Command;
use std::time::Duration;

use augur_suite::{http, http_with, raw_rows, venv_python, AugurServer, TempDir};

const WRITER: &str = "influx-writer-0123456789";
const READER: &str = "influx-reader-0123456789";

#[test]
fn the_influxdb_client_libraries_set_up_and_write_at_every_precision() {
    let dir = TempDir::new("influx-clients");
    let config = dir.0.join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\nname = \"telegraf\"\ntoken = \"{WRITER}\"\nscopes = [\"write\", \"read\"]\n\
             [[auth.tokens]]\nname = \"grafana\"\ntoken = \"{READER}\"\nscopes = [\"read\"]\n"
        ),
    )
    .unwrap();
    let server =
        AugurServer::start_with_env(&["--config", config.to_str().unwrap()], &[("AUGUR_AUTH__ENABLED", "true")]);
    // A whole hour, so every precision (hours included) can name it exactly.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let t0 = now / 3600 * 3600;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/influx_clients.py");
    let output = Command::new(venv_python())
        .args([script, &format!("http://{}", server.http), WRITER, READER, &t0.to_string()])
        .output()
        .expect("run the InfluxDB clients");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "a client check failed: {stderr}");

    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());
    let t0_ns = i64::try_from(t0).unwrap() * 1_000_000_000;
    for measurement in ["v1_h", "v1_m", "v1_s", "v1_ms", "v1_u", "v1_n", "v1_ns", "v2_s", "v2_ms", "v2_us", "v2_ns"] {
        let rows = raw_rows(&data.0, measurement);
        let times: Vec<_> = rows.iter().map(|r| r["time"].as_i64()).collect();
        assert_eq!(times, [Some(t0_ns)], "{measurement}: {rows:?}");
    }
}

#[test]
fn query_answers_set_up_statements_and_names_what_it_does_not_run() {
    let server = AugurServer::start(&[]);
    let addr = server.http;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    // Telegraf's outputs.influxdb at start: a form body.
    let (status, body) = http_with(addr, "POST", "/query", &form, b"q=CREATE+DATABASE+%22telegraf%22");
    assert_eq!((status, body.as_str()), (200, r#"{"results":[{"statement_id":0}]}"#));
    // Several statements, `q` in the query string, GET.
    let (status, body) =
        http(addr, "GET", "/query?q=CREATE%20DATABASE%20b%3B%20SHOW%20DATABASES%3BSHOW%20RETENTION%20POLICIES", b"");
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["results"][1]["series"][0]["values"], serde_json::json!([["b"], ["telegraf"]]), "{body}");
    assert_eq!(reply["results"][2]["error"], "database name required", "{body}");
    // A write names its database.
    let (status, _) = http(addr, "POST", "/write?db=metrics&precision=ns", b"m v=1 1");
    assert_eq!(status, 204);
    let (_, body) = http(addr, "GET", "/query?q=SHOW+DATABASES", b"");
    assert!(body.contains(r#"["metrics"]"#), "{body}");
    // What is not served is named, with where to go instead; the statements after it do not run.
    let (status, body) = http(addr, "GET", "/query?q=SELECT+*+FROM+m%3BCREATE+DATABASE+c", b"");
    assert_eq!(status, 200);
    assert!(body.contains("Augur does not run SELECT statements") && body.contains("/api/v1/rollups"), "{body}");
    assert!(!body.contains(r#""statement_id":1"#), "{body}");
    let (status, body) = http(addr, "POST", "/query", b"");
    assert_eq!((status, body.as_str()), (400, r#"{"error":"missing required parameter \"q\""}"#));
    let (status, body) = http(addr, "GET", "/query?q=SELECT+'open", b"");
    assert_eq!(status, 400);
    assert!(body.contains("error parsing query: unterminated quote"), "{body}");

    // The precisions of InfluxDB 1.x's handler, and its `us` trap refused by name.
    for precision in ["", "n", "ns", "u", "ms", "s", "m", "h"] {
        let (status, body) = http(addr, "POST", &format!("/write?precision={precision}"), b"m v=1 1");
        assert_eq!(status, 204, "precision={precision}: {body}");
    }
    let (status, body) = http(addr, "POST", "/write?precision=us", b"m v=1 1");
    assert_eq!(status, 400);
    assert!(body.contains("invalid precision `us`") && body.contains("use u"), "{body}");
    for precision in ["", "ns", "us", "ms", "s"] {
        let (status, body) = http(addr, "POST", &format!("/api/v2/write?precision={precision}"), b"m v=1 1");
        assert_eq!(status, 204, "v2 precision={precision}: {body}");
    }

    // Ping, readiness and health as InfluxDB shapes them.
    let (status, body) = http(addr, "GET", "/ping?verbose=true", b"");
    assert_eq!((status, body.as_str()), (200, r#"{"version":"1.8.10"}"#));
    for path in ["/ready", "/api/v2/ready"] {
        let (status, body) = http(addr, "GET", path, b"");
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, &reply["status"]), (200, &serde_json::json!("ready")), "{path}: {body}");
        assert!(reply["started"].as_str().is_some_and(|s| s.ends_with('Z')) && reply["up"].is_string(), "{body}");
    }
    let (status, body) = http(addr, "GET", "/api/v2/health", b"");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &reply["status"], &reply["checks"]), (200, &serde_json::json!("pass"), &serde_json::json!([])));
}
