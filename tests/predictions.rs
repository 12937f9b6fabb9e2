//! Predictions end to end: line protocol over HTTP into the real binary, anomaly events out in
//! Parquet (`parquet/predictions/`), counted in `/metrics`, and restored across a restart.

use std::time::Duration;

use arrow_array::{Array, Float64Array, StringArray, TimestampNanosecondArray};
use augur_suite::{column, cpu_with_spike, http, metric, parquet_files, read_parquet, AugurServer, TempDir, MINUTE};

#[test]
fn a_spike_sent_over_http_becomes_one_event_in_parquet() {
    let dir = TempDir::new("predictions");
    let data = dir.0.join("data");
    let server = AugurServer::start_in(&data, &["--partitions", "1"]);
    let start = augur_storage::now_nanos() / MINUTE * MINUTE - 12 * 60 * MINUTE;
    let (status, reply) =
        http(server.http, "POST", "/write", cpu_with_spike(start, 0..600, (400..405, 50.0)).as_bytes());
    assert_eq!(status, 204, "{reply}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        let scored: u64 = text
            .lines()
            .filter(|l| l.starts_with("augur_predict_scored_values_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if scored == 600 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "600 values scored within 30 s: {scored}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The host's risk: the spike's score of 1, halved every hour of event time since.
    let (status, reply) = http(server.http, "GET", "/api/v1/risk?region=eu&top=5", b"");
    assert_eq!(status, 200, "{reply}");
    let risk: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!((risk[0]["entity"].as_str(), risk[0]["field"].as_str()), (Some("web1"), Some("usage")), "{reply}");
    let expected = 0.5f64.powf(199.0 / 60.0);
    assert!((risk[0]["risk"].as_f64().unwrap() - expected).abs() < 0.02, "{reply}: about {expected}");
    assert_eq!(http(server.http, "GET", "/api/v1/risk?top=0", b"").0, 400);
    assert!(server.terminate(Duration::from_secs(30)).success());

    let files: Vec<_> = parquet_files(&data)
        .0
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/predictions/region=eu/"))
        .collect();
    let (mut rows, mut risk_rows) = (Vec::new(), 0);
    for path in &files {
        for batch in read_parquet(path) {
            let kind = column::<StringArray>(&batch, "kind");
            let (state, field, entity) = (
                column::<StringArray>(&batch, "state"),
                column::<StringArray>(&batch, "field"),
                column::<StringArray>(&batch, "entity"),
            );
            let (end, peak) =
                (column::<TimestampNanosecondArray>(&batch, "end"), column::<Float64Array>(&batch, "peak_value"));
            for i in 0..batch.num_rows() {
                if kind.value(i) == "risk" {
                    assert_eq!(entity.value(i), "web1");
                    risk_rows += 1;
                    continue;
                }
                rows.push((
                    state.value(i).to_owned(),
                    field.value(i).to_owned(),
                    entity.value(i).to_owned(),
                    end.is_valid(i),
                    peak.value(i),
                ));
            }
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(rows.len(), 2, "one event: its open and its closed row: {rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].3), ("open", false));
    assert_eq!((rows[1].0.as_str(), rows[1].3), ("closed", true));
    assert!(rows.iter().all(|r| r.1 == "usage" && r.2 == "web1" && r.4 > 80.0), "{rows:?}");
    assert!(risk_rows >= 1, "the host's risk change is written too");

    // The detectors come back from the last checkpoint, also under another partition count: after
    // a restart a new extreme is an event at once (a fresh detector would still be warming up for
    // 100 values).
    let server = AugurServer::start_in(&data, &["--partitions", "3"]);
    let (status, reply) =
        http(server.http, "POST", "/write", cpu_with_spike(start, 600..640, (620..622, 120.0)).as_bytes());
    assert_eq!(status, 204, "{reply}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        if opened(&text) == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the second spike opened an event: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(&http(server.http, "GET", "/metrics", b"").1, "augur_recovery_replayed_records"), Some(0));
    assert!(server.terminate(Duration::from_secs(30)).success());
}

/// Events opened over all partitions.
fn opened(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("augur_predict_events_opened_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A webhook receiver on a free port: answers 500 to the first POST and 204 to the rest, and
/// keeps every body.
fn receiver() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let status = if n == 0 { "500 Internal Server Error" } else { "204 No Content" };
            let _ = stream
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
            kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
        }
    });
    (addr, bodies)
}

#[test]
fn events_are_posted_to_the_webhook_once_each_retried_after_a_failure() {
    let dir = TempDir::new("webhook");
    let (addr, bodies) = receiver();
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, format!("[predict]\nwebhook = \"http://{addr}/alerts\"\n")).unwrap();
    let server = AugurServer::start_in(&dir.0.join("data"), &["--config", config.to_str().unwrap()]);
    let start = augur_storage::now_nanos() / MINUTE * MINUTE - 12 * 60 * MINUTE;
    assert_eq!(http(server.http, "POST", "/write", cpu_with_spike(start, 0..600, (400..405, 50.0)).as_bytes()).0, 204);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bodies.lock().unwrap().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "alerts within 30 s: {:?}", bodies.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = loop {
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        if metric(&text, "augur_webhook_alerts_sent_total") == Some(2) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(server.terminate(Duration::from_secs(30)).success());
    let bodies = bodies.lock().unwrap().clone();
    let alerts: Vec<serde_json::Value> = bodies.iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(alerts[0], alerts[1], "the refused first POST is sent again");
    assert_eq!((alerts[1]["state"].as_str(), alerts[2]["state"].as_str()), (Some("open"), Some("closed")));
    assert_eq!(alerts[1]["event_id"], alerts[2]["event_id"]);
    assert_eq!((alerts[2]["entity"].as_str(), alerts[2]["kind"].as_str()), (Some("web1"), Some("anomaly")));
    assert_eq!(alerts.len(), 3, "one open and one close, nothing more: {bodies:?}");
    assert_eq!(metric(&text, "augur_webhook_alerts_sent_total"), Some(2), "{text}");
    assert_eq!(metric(&text, "augur_webhook_failed_attempts_total"), Some(1), "{text}");
}

#[test]
fn with_a_resolution_the_window_means_are_scored_instead_of_every_point() {
    let dir = TempDir::new("predict-resolution");
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, "[predict]\nresolution = \"1m\"\n").unwrap();
    let server = AugurServer::start_in(&dir.0.join("data"), &["--config", config.to_str().unwrap()]);
    // Two points a minute for 600 minutes, a spike over minutes 400 to 404.
    let start = augur_storage::now_nanos() / MINUTE * MINUTE - 12 * 60 * MINUTE;
    let body: String = (0..1200i64)
        .map(|i| {
            let m = i / 2;
            let base = 40.0 + ((m * 7919) % 11) as f64 * 0.3;
            let value = if (400..405).contains(&m) { base + 50.0 } else { base };
            format!("cpu,host=web1,region=eu usage={value} {}\n", start + i * MINUTE / 2)
        })
        .collect();
    assert_eq!(http(server.http, "POST", "/write", body.as_bytes()).0, 204);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (scored, opened) = loop {
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        let sum = |name: &str| -> u64 {
            text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
        };
        let found = (sum("augur_predict_scored_values_total{"), opened(&text));
        if found.1 >= 1 || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(opened, 1, "the spike's minutes opened one event");
    // One mean per closed minute (the newest minutes are still open), not 1200 points.
    assert!((590..=600).contains(&scored), "{scored} values scored");
    assert!(server.terminate(Duration::from_secs(30)).success());
    assert!(!check_config_accepts(&dir.0, "[predict]\nresolution = \"5m\"\n"), "an unknown resolution is refused");
}

/// Whether `augur check-config` accepts `text`.
fn check_config_accepts(dir: &std::path::Path, text: &str) -> bool {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    std::process::Command::new(augur_suite::augur_binary())
        .env("AUGUR_AUTH__ENABLED", "false")
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap()
        .status
        .success()
}
