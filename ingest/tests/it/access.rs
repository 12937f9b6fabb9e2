//! Who may write, and how much: tokens, scopes, rate limits and series budgets against a real
//! listener.

use std::time::{Duration, Instant};

use augur_ingest::config::{AuthConfig, LimitsConfig, Scope, TokenConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{request, Options, Server};

const V2: &str = "/api/v2/write?org=o&bucket=b";
const FLEET: &str = "fleet-secret-0123456789";
const GRAFANA: &str = "grafana-secret-0123456789";

fn with_tokens(limits: LimitsConfig) -> Options {
    let token = |name: &str, token: &str, scopes: Vec<Scope>| TokenConfig {
        name: name.into(),
        token: token.into(),
        scopes,
        tenant: None,
        points_per_second: None,
        burst_points: None,
    };
    Options {
        auth: AuthConfig {
            enabled: true,
            tokens: vec![
                token("fleet", FLEET, vec![Scope::Write]),
                token("grafana", GRAFANA, vec![Scope::Read]),
                token("other-fleet", "other-secret-0123456789", vec![Scope::Write]),
            ],
        },
        limits,
        ..Options::default()
    }
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_token_with_the_write_scope_in_any_form_clients_send() {
    let server = Server::start(with_tokens(LimitsConfig::default())).await;
    let line = b"cpu,host=a usage=1 1000";

    let reply = request(server.http, "POST", V2, &[], line).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("authentication required"), "{}", reply.body);
    assert!(reply.header("WWW-Authenticate").is_some_and(|v| v.starts_with("Basic")));

    let wrong = format!("Token {FLEET}x");
    let reply = request(server.http, "POST", V2, &[("Authorization", &wrong)], line).await;
    assert_eq!((reply.status, reply.json()["message"].as_str()), (401, Some("invalid token")));
    assert!(!reply.body.contains(FLEET), "a token is never echoed");

    let read_only = format!("Token {GRAFANA}");
    let reply = request(server.http, "POST", V2, &[("Authorization", &read_only)], line).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains("token `grafana` lacks the `write` scope"), "{}", reply.body);
    assert!(server.drain().is_empty(), "nothing of a refused request is stored");

    let basic = format!("Basic {}", base64(&format!("telegraf:{FLEET}")));
    let forms = [
        (V2.to_owned(), Some(format!("Token {FLEET}"))),
        (V2.to_owned(), Some(format!("Bearer {FLEET}"))),
        ("/write?db=x".to_owned(), Some(basic)),
        (format!("/write?db=x&u=telegraf&p={FLEET}"), None),
    ];
    for (path, authorization) in &forms {
        let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("Authorization", a.as_str())).collect();
        let reply = request(server.http, "POST", path, &headers, line).await;
        assert_eq!(reply.status, 204, "{path} {authorization:?}: {}", reply.body);
    }
    assert_eq!(server.drain().len(), forms.len());

    for open in ["/ping", "/health"] {
        assert_ne!(request(server.http, "GET", open, &[], b"").await.status, 401, "{open} is open to load balancers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_and_others_are_not_slowed() {
    let limits = LimitsConfig { points_per_second: 1000, burst_points: 2000, ..LimitsConfig::default() };
    let server = Server::start(with_tokens(limits)).await;
    let body: String = (0..2500).map(|i| format!("cpu,host=h{i} usage=1 {}\n", 1000 + i)).collect();
    let fleet = format!("Token {FLEET}");

    // The burst lets the first request in whole; it overdraws the bucket by 500 points, paid off
    // in half a second: the next request right away is refused with the time to wait.
    let reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], body.as_bytes()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], body.as_bytes()).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert!(reply.body.contains("`fleet` may write 1000 points/s (burst 2000)"), "{}", reply.body);

    let other = "Token other-secret-0123456789".to_owned();
    let reply = request(server.http, "POST", V2, &[("Authorization", &other)], body.as_bytes()).await;
    assert_eq!(reply.status, 204, "another tenant has its own budget: {}", reply.body);

    // A client 10× over its rate for a second: almost everything is refused, quickly; then the
    // debt is paid and it may write again.
    let started = Instant::now();
    let (mut stored, mut refused) = (0, 0);
    while started.elapsed() < Duration::from_secs(1) {
        let reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], body.as_bytes()).await;
        match reply.status {
            204 => stored += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(refused > 5 * stored.max(1), "{stored} stored, {refused} refused");
    assert_eq!(server.drain().len(), 2500 * (2 + stored));
    let mut reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], b"cpu,host=a usage=2 5").await;
    for _ in 0..4 {
        let Some(wait) = reply.header("Retry-After").map(|s| s.parse::<u64>().unwrap()) else { break };
        tokio::time::sleep(Duration::from_secs(wait)).await;
        reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], b"cpu,host=a usage=2 5").await;
    }
    assert_eq!(reply.status, 204, "after waiting as told, it may write again: {}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_series_past_the_budget_are_refused_by_line_and_known_ones_kept() {
    let limits = LimitsConfig { new_series_per_hour: 3, ..LimitsConfig::default() };
    let server = Server::start(with_tokens(limits)).await;
    let fleet = format!("Token {FLEET}");
    let first = "cpu,host=a v=1 1\ncpu,host=b v=1 2\ncpu,host=c v=1 3\ncpu,host=d v=1 4\ncpu,host=a v=2 5\n";
    let reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], first.as_bytes()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["accepted_points"], 4);
    assert_eq!(json["errors"][0]["line"], 4);
    let reason = json["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("tenant `fleet` already created 3 new series this hour (limits.new-series-per-hour)"),
        "{reason}"
    );
    assert_eq!(server.drain().len(), 4);

    // Known series keep flowing; another tenant has its own budget.
    let reply = request(server.http, "POST", V2, &[("Authorization", &fleet)], b"cpu,host=b v=3 6").await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let other = "Token other-secret-0123456789".to_owned();
    let reply = request(server.http, "POST", V2, &[("Authorization", &other)], b"cpu,host=d v=1 7").await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(server.drain().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_clients_over_the_rate_are_slowed_not_dropped() {
    let limits = LimitsConfig { points_per_second: 4000, burst_points: 1000, ..LimitsConfig::default() };
    let server = Server::start(Options { limits, ..Options::default() }).await;
    let mut stream = TcpStream::connect(server.tcp).await.unwrap();
    let started = Instant::now();
    for chunk in 0..12 {
        let lines: String = (0..1000).map(|i| format!("cpu,host=h{i} v=1 {}\n", chunk * 1000 + i)).collect();
        stream.write_all(lines.as_bytes()).await.unwrap();
    }
    server.wait_for_points(12_000).await;
    // The last read (at most 128 KiB, under 5700 of these lines) may overdraw the bucket, so the
    // reads paused for at least (12000 − 1000 burst − 5700) / 4000 points/s ≈ 1.3 s.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(server.drain().len(), 12_000, "every point arrived");
}
