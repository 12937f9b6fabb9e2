//! A real Prometheus (Debian's `prometheus`) against Augur: it scrapes `/metrics` with the admin
//! token (the target is up, every sample parses, the values are Augur's), and it remote-writes
//! what it scrapes from a real node exporter (Debian's `prometheus-node-exporter`) into Augur.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use augur_suite::{http, http_with, metric, raw_rows, AugurServer, TempDir};

const ADMIN: &str = "admin-secret-0123456789";

/// A Prometheus server on loopback, stopped on drop.
struct Prometheus(Child, std::net::SocketAddr);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with the configuration file `yaml`, its data in `dir`.
    fn start(dir: &TempDir, yaml: &str) -> Self {
        let config = dir.0.join("prometheus.yml");
        std::fs::write(&config, yaml).unwrap();
        let addr = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("Prometheus is needed for this test ({e}): apt-get install -y prometheus"));
        Self(child, addr)
    }

    /// The value of the instant query `query` (URL-encoded), if it has one sample.
    fn query(&self, query: &str) -> Option<f64> {
        std::net::TcpStream::connect(self.1).ok()?; // still starting
        let (status, body) = http(self.1, "GET", &format!("/api/v1/query?query={query}"), b"");
        if status != 200 {
            return None;
        }
        let reply: serde_json::Value = serde_json::from_str(&body).ok()?;
        reply["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

/// A free port: bind one, let it go, hand it to the program.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn a_real_prometheus_scrapes_the_metrics_with_a_token() {
    let dir = TempDir::new("prometheus");
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, format!("[[auth.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n"))
        .unwrap();
    let server =
        AugurServer::start_with_env(&["--config", config.to_str().unwrap()], &[("AUGUR_AUTH__ENABLED", "true")]);
    let auth = format!("Token {ADMIN}");
    let lines: String = (0..250).map(|i| format!("cpu,host=h{i},region=eu usage={i}\n")).collect();
    let (status, body) = http_with(server.http, "POST", "/api/v2/write", &[("Authorization", &auth)], lines.as_bytes());
    assert_eq!(status, 204, "{body}");

    let yaml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: augur\n    authorization:\n      type: Token\n      credentials: {ADMIN}\n    static_configs:\n      - targets: [\"{}\"]\n",
        server.http
    );
    let prometheus = Prometheus::start(&dir, &yaml);
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let up = prometheus.query("up%7Bjob%3D%22augur%22%7D");
        let accepted = prometheus.query("sum(augur_ingest_points_accepted_total)");
        if let (true, Some(accepted)) = (up == Some(1.0), accepted) {
            break accepted;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape Augur: up = {up:?}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(accepted, 250.0);
    let (_, targets) = http(prometheus.1, "GET", "/api/v1/targets", b"");
    let targets: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!((target["health"].as_str(), target["lastError"].as_str()), (Some("up"), Some("")), "{target}");
    // Histograms parse as histograms: a quantile over the write endpoint's latency buckets.
    let p99 = "histogram_quantile(0.99%2C%20sum%20by%20(le)%20(augur_http_request_duration_seconds_bucket%7Bendpoint%3D%22%2Fapi%2Fv2%2Fwrite%22%7D))";
    assert!(prometheus.query(p99).is_some_and(|s| s > 0.0 && s <= 10.0), "no latency quantile");
    drop(prometheus);
    assert!(server.terminate(Duration::from_secs(30)).success());
}

/// A node exporter on loopback, stopped on drop.
struct NodeExporter(Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_remote_writes_a_node_exporters_series() {
    const WRITER: &str = "remote-write-0123456789";
    let dir = TempDir::new("remote-write");
    let config = dir.0.join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\nname = \"prometheus\"\ntoken = \"{WRITER}\"\nscopes = [\"write\"]\n\
             [[auth.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n"
        ),
    )
    .unwrap();
    let server =
        AugurServer::start_with_env(&["--config", config.to_str().unwrap()], &[("AUGUR_AUTH__ENABLED", "true")]);
    let exporter_addr = free_port();
    // A few collectors: enough kinds of series (gauges, counters, many labels), bounded in number.
    let exporter = NodeExporter(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address={exporter_addr}"))
            .args(["--collector.disable-defaults", "--collector.cpu", "--collector.loadavg", "--collector.meminfo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("the node exporter is needed ({e}): apt-get install -y prometheus-node-exporter")
            }),
    );
    // `external_labels` is how a Prometheus says where it runs: its `region` is Augur's region.
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    region: eu-west\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"{exporter_addr}\"]\n\
         remote_write:\n  - url: http://{}/api/v1/write\n    authorization:\n      credentials: {WRITER}\n\
         \x20   queue_config:\n      batch_send_deadline: 1s\n",
        server.http
    );
    let prometheus = Prometheus::start(&dir, &yaml);

    // Prometheus reads its write-ahead log before it sends: wait until a few scrapes arrived.
    let admin = format!("Token {ADMIN}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, metrics) = http_with(server.http, "GET", "/metrics", &[("Authorization", &admin)], b"");
        let accepted = metric(&metrics, "augur_ingest_points_accepted_total{protocol=\"prometheus\"}");
        if accepted.is_some_and(|n| n > 0) && prometheus.query("node_memory_MemTotal_bytes").is_some() {
            // Three more scrape intervals, so the sample Prometheus answers with has been sent.
            std::thread::sleep(Duration::from_secs(4));
            break;
        }
        assert!(Instant::now() < deadline, "no remote write arrived; accepted = {accepted:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let mem_total = prometheus.query("node_memory_MemTotal_bytes").unwrap();
    // Prometheus' own counters of what it could not send (it does not scrape itself).
    let (_, own) = http(prometheus.1, "GET", "/metrics", b"");
    let failed = metric(&own, "prometheus_remote_storage_samples_failed_total");
    let retried = metric(&own, "prometheus_remote_storage_samples_retried_total");
    let sent = metric(&own, "prometheus_remote_storage_samples_total");
    drop(prometheus);
    drop(exporter);
    assert_eq!((failed, retried), (Some(0), Some(0)), "Prometheus failed or retried samples");
    assert!(sent.is_some_and(|n| n > 0), "{sent:?}");
    // The raw tier is written at the drain; read it once the server has stopped.
    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());

    let rows = raw_rows(&data.0, "node_memory_MemTotal_bytes");
    assert!(!rows.is_empty(), "node_memory_MemTotal_bytes never arrived");
    for row in &rows {
        assert_eq!(row["value"].as_f64(), Some(mem_total), "{row:?}");
        assert_eq!(row["region"], "eu-west", "{row:?}");
        assert_eq!(row["job"], "node", "{row:?}");
        assert_eq!(row["instance"], exporter_addr.to_string().as_str(), "{row:?}");
        assert_eq!(row["time"].as_i64().unwrap() % 1_000_000, 0, "Prometheus times are whole ms: {row:?}");
    }
    // Labelled series keep every label: one row per CPU and mode at each scrape.
    let cpu = raw_rows(&data.0, "node_cpu_seconds_total");
    assert!(cpu.iter().any(|r| r.get("mode").is_some_and(|m| m == "idle") && r.get("cpu").is_some()), "{cpu:?}");
    assert!(cpu.iter().all(|r| r["value"].as_f64().is_some_and(|v| v >= 0.0)));
    let load = raw_rows(&data.0, "node_load1");
    assert!(load.len() >= 2, "one node_load1 point per scrape: {}", load.len());
}
