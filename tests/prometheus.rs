//! `/metrics` scraped by a real Prometheus (Debian's `prometheus`), with the admin token in its
//! scrape config: the target is up, every sample parses, and the values are Augur's.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use augur_suite::{http, http_with, AugurServer, TempDir};

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
    fn start(dir: &TempDir, target: std::net::SocketAddr) -> Self {
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: augur\n    authorization:\n      type: Token\n      credentials: {ADMIN}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        // A free port: bind one, let it go, hand it to Prometheus.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
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

    let prometheus = Prometheus::start(&dir, server.http);
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
