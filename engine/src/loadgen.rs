//! `augur loadgen`: drives TSBS-shaped data at a server in any protocol Augur speaks that
//! acknowledges writes (or is a TCP stream), and reports throughput and acknowledgement latency.
//! Counts only acknowledged (2xx) writes.
//!
//! # Layout
//! - [`tsbs`]: the data: a fleet of hosts over regions, ten fields per point.
//! - [`wire`]: the fleet's points in each protocol's format.
//! - [`client`]: one HTTP keep-alive connection or TCP stream per load connection.

pub mod client;
pub mod tsbs;
pub mod wire;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use augur_ingest::point::now_nanos;
use bytes::Bytes;
use serde::Serialize;

use self::client::{Ack, HttpRequest, Sender};
use self::tsbs::Fleet;
use self::wire::{Format, Renderer};

/// Pause after a 503 or 429 before the connection sends again (shorter than the `Retry-After`
/// servers advertise, to keep the pressure on).
const SHED_BACKOFF: Duration = Duration::from_millis(20);

/// The wire protocol to drive. StatsD is not among them: UDP acknowledges nothing, so there is
/// nothing to count but what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP POSTs of line protocol, one batch per request.
    Http,
    /// Newline-delimited line protocol on a TCP stream.
    Tcp,
    /// Prometheus remote write 1.0 (`/api/v1/write`): one series per host and field.
    Prometheus,
    /// OTLP/HTTP protobuf (`/v1/metrics`): a resource per point, a gauge per field.
    Otlp,
    /// JSON lines (`/api/v1/points`).
    Jsonlines,
    /// collectd `write_http` JSON (`/collectd`): a value list per point.
    Collectd,
    /// Tagged Graphite plaintext on a TCP stream: a line per field.
    Graphite,
}

impl Protocol {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Prometheus => "prometheus",
            Self::Otlp => "otlp",
            Self::Jsonlines => "jsonlines",
            Self::Collectd => "collectd",
            Self::Graphite => "graphite",
        }
    }

    fn format(self) -> Format {
        match self {
            Self::Http | Self::Tcp => Format::LineProtocol,
            Self::Prometheus => Format::Prometheus,
            Self::Otlp => Format::Otlp,
            Self::Jsonlines => Format::JsonLines,
            Self::Collectd => Format::Collectd,
            Self::Graphite => Format::Graphite,
        }
    }

    /// How an HTTP protocol posts (path, Content-Type, Content-Encoding); `None` for TCP.
    fn http(self) -> Option<(&'static str, &'static str, Option<&'static str>)> {
        match self {
            Self::Http => {
                Some(("/api/v2/write?org=augur&bucket=loadgen&precision=ns", "text/plain; charset=utf-8", None))
            }
            Self::Prometheus => Some(("/api/v1/write", "application/x-protobuf", Some("snappy"))),
            Self::Otlp => Some(("/v1/metrics", "application/x-protobuf", None)),
            Self::Jsonlines => Some(("/api/v1/points", "application/x-ndjson", None)),
            Self::Collectd => Some(("/collectd", "application/json", None)),
            Self::Tcp | Self::Graphite => None,
        }
    }
}

/// Options of `augur loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenOptions {
    /// Server to load. For HTTP protocols, a URL without a path posts to the protocol's Augur
    /// endpoint; give a path to target another (e.g. `http://127.0.0.1:8086/write?db=bench` for
    /// InfluxDB 1.x). For `tcp` and `graphite`, the host and port of the listener.
    #[arg(long, default_value = "http://127.0.0.1:8086")]
    pub url: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,
    /// Number of hosts (series per field = hosts).
    #[arg(long, default_value_t = 1000)]
    pub hosts: usize,
    /// Number of regions the hosts are spread over.
    #[arg(long, default_value_t = 4)]
    pub regions: usize,
    /// Fields per point.
    #[arg(long, default_value_t = 10)]
    pub fields: usize,
    /// Points per request (HTTP) or per write (TCP).
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// How long to run, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub duration: Duration,
    /// Target points per second over all connections; 0 sends as fast as the server acknowledges.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Compress bodies with gzip (HTTP protocols but `prometheus`, whose bodies are snappy).
    #[arg(long)]
    pub gzip: bool,
    /// A token with the `write` scope, sent as `Authorization: Token …` (or set AUGUR_TOKEN).
    #[arg(long, env = "AUGUR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object with the results on the last line.
    #[arg(long)]
    pub json: bool,
    /// Also print what was acknowledged in every interval of this length, e.g. `10s` (one JSON
    /// object per interval with `--json`): a sustained run shows whether the rate holds.
    #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
    pub report_every: Option<Duration>,
}

impl Default for LoadgenOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8086".into(),
            protocol: Protocol::Http,
            hosts: 1000,
            regions: 4,
            fields: 10,
            batch: 5000,
            connections: 4,
            duration: Duration::from_secs(30),
            rate: 0,
            gzip: false,
            token: None,
            json: false,
            report_every: None,
        }
    }
}

/// Counters a caller can watch while the load runs (the demo's progress bar and the interval
/// report do).
#[derive(Debug, Default)]
pub struct Live {
    /// Points acknowledged so far.
    pub points: AtomicU64,
    /// Field values acknowledged so far.
    pub values: AtomicU64,
    /// Requests sent so far.
    pub requests: AtomicU64,
    /// Requests that failed or were refused so far.
    pub errors: AtomicU64,
    /// Of those, refused with 503 (shed).
    pub shed: AtomicU64,
    /// Acknowledgement latencies (µs) since the interval report last took them.
    latencies_us: Mutex<Vec<u32>>,
}

impl Live {
    fn acknowledged(&self, points: u64, values: u64, micros: u32) {
        self.points.fetch_add(points, Ordering::Relaxed);
        self.values.fetch_add(values, Ordering::Relaxed);
        self.latencies_us.lock().unwrap_or_else(PoisonError::into_inner).push(micros);
    }
}

/// What was acknowledged in one interval of a run (`--report-every`).
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// End of the interval, seconds since the run started.
    pub end_s: f64,
    /// Acknowledged field values per second in the interval.
    pub values_per_s: f64,
    /// Requests sent in the interval.
    pub requests: u64,
    /// Requests refused or failed in the interval.
    pub errors: u64,
    /// Of those, refused with 503.
    pub shed: u64,
    /// Median acknowledgement latency in the interval.
    pub p50_ms: f64,
    /// 99th percentile acknowledgement latency in the interval.
    pub p99_ms: f64,
}

/// Prints an [`Interval`] line every `every` until the run's tasks end (the caller aborts it).
async fn report_intervals(live: Arc<Live>, started: Instant, every: Duration, json: bool) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let (mut values, mut requests, mut errors, mut shed) = (0, 0, 0, 0);
    let mut last = Instant::now();
    loop {
        ticks.tick().await;
        let seconds = last.elapsed().as_secs_f64().max(1e-9);
        last = Instant::now();
        let now = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *live.latencies_us.lock().unwrap_or_else(PoisonError::into_inner));
        latencies.sort_unstable();
        let interval = Interval {
            end_s: started.elapsed().as_secs_f64(),
            values_per_s: (now(&live.values) - values) as f64 / seconds,
            requests: now(&live.requests) - requests,
            errors: now(&live.errors) - errors,
            shed: now(&live.shed) - shed,
            p50_ms: percentile_ms(&latencies, 0.50),
            p99_ms: percentile_ms(&latencies, 0.99),
        };
        (values, requests, errors, shed) = (now(&live.values), now(&live.requests), now(&live.errors), now(&live.shed));
        if json {
            println!("{}", serde_json::to_string(&interval).unwrap_or_default());
        } else {
            println!(
                "  {:>6.0}s  {:>6.3}M values/s  {:>5} requests  {:>5} errors ({} shed)  ack p50 {:.1} ms, p99 {:.1} ms",
                interval.end_s,
                interval.values_per_s / 1e6,
                interval.requests,
                interval.errors,
                interval.shed,
                interval.p50_ms,
                interval.p99_ms
            );
        }
    }
}

/// The `p` quantile of sorted latencies (µs), in ms; 0 when there are none.
fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// The results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Acknowledged points per second.
    pub points_per_s: f64,
    /// Acknowledged field values per second.
    pub values_per_s: f64,
    /// Acknowledged points.
    pub points_total: u64,
    /// Acknowledged field values.
    pub values_total: u64,
    /// Requests (or TCP writes) sent.
    pub requests: u64,
    /// Requests refused (non-2xx) or failed (connection errors).
    pub errors: u64,
    /// Of those, refused with 503 (shed by an overloaded server).
    pub shed: u64,
    /// Median acknowledgement latency.
    pub p50_ms: f64,
    /// 99th percentile acknowledgement latency.
    pub p99_ms: f64,
    /// Slowest acknowledgement.
    pub max_ms: f64,
    /// Wall time of the run.
    pub duration_s: f64,
    /// The protocol driven.
    pub protocol: Protocol,
    /// Connections used.
    pub connections: usize,
    /// Points per request.
    pub batch: usize,
    /// Whether bodies were gzip.
    pub gzip: bool,
}

impl Report {
    /// Prints the human-readable summary, and the JSON line if asked.
    pub fn print(&self, json: bool) {
        println!(
            "loadgen: {} over {} connection(s), {} points/request{}, {:.1}s",
            self.protocol.name(),
            self.connections,
            self.batch,
            if self.gzip { ", gzip" } else { "" },
            self.duration_s
        );
        println!(
            "  acknowledged: {} points, {} field values ({} requests, {} errors, {} shed with 503)",
            self.points_total, self.values_total, self.requests, self.errors, self.shed
        );
        println!("  throughput:   {:.0} points/s, {:.0} field values/s", self.points_per_s, self.values_per_s);
        println!("  ack latency:  p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", self.p50_ms, self.p99_ms, self.max_ms);
        if json {
            let mut stdout = std::io::stdout().lock();
            let _ = serde_json::to_writer(&mut stdout, self);
            let _ = writeln!(stdout);
        }
    }
}

/// Where to send.
struct Target {
    addr: std::net::SocketAddr,
    /// The request's shape, for HTTP protocols.
    http: Option<HttpRequest>,
}

async fn resolve(options: &LoadgenOptions) -> anyhow::Result<Target> {
    let rest =
        options.url.strip_prefix("http://").or_else(|| options.url.strip_prefix("tcp://")).unwrap_or(&options.url);
    if options.url.starts_with("https://") {
        bail!("--url {}: https is not supported; use http://", options.url);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let addr = tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("--url {}: cannot resolve `{authority}` (expected HOST:PORT)", options.url))?
        .next()
        .with_context(|| format!("--url {}: `{authority}` has no address", options.url))?;
    let http = options.protocol.http().map(|(default_path, content_type, encoding)| HttpRequest {
        host: addr.to_string(),
        path: if path.is_empty() || path == "/" { default_path.to_owned() } else { path.to_owned() },
        content_type,
        encoding: if options.gzip { Some("gzip") } else { encoding },
        authorization: options.token.as_ref().map(|t| format!("Token {t}")),
    });
    Ok(Target { addr, http })
}

/// Per-connection results.
#[derive(Default)]
struct ConnectionResult {
    latencies_us: Vec<u32>,
    points: u64,
    values: u64,
    requests: u64,
    errors: u64,
    shed: u64,
    /// 401 or 403: the run stops.
    auth_refused: Option<u16>,
}

/// Runs the load as `options` say, updating `live` as acknowledgements arrive.
///
/// # Errors
/// When the options are unusable or the server cannot be reached at all.
pub async fn run(options: &LoadgenOptions, live: Arc<Live>) -> anyhow::Result<Report> {
    if options.batch == 0 || options.connections == 0 || options.hosts == 0 {
        bail!("--batch, --connections and --hosts must be at least 1");
    }
    if options.gzip && matches!(options.protocol, Protocol::Tcp | Protocol::Graphite | Protocol::Prometheus) {
        bail!("--gzip applies to HTTP protocols but prometheus (remote write bodies are snappy)");
    }
    let target = Arc::new(resolve(options).await?);
    // Fail fast when nothing listens, instead of counting a run of errors.
    connect(&target).await.with_context(|| format!("cannot connect to {}", target.addr))?;

    let started = Instant::now();
    let deadline = started + options.duration;
    let reporter = options
        .report_every
        .filter(|every| !every.is_zero())
        .map(|every| tokio::spawn(report_intervals(live.clone(), started, every, options.json)));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..options.connections {
        let options = options.clone();
        let (target, live) = (target.clone(), live.clone());
        tasks.spawn(async move { drive(index, &options, &target, &live, deadline).await });
    }
    let mut total = ConnectionResult::default();
    while let Some(result) = tasks.join_next().await {
        let result = result.context("a load connection panicked")?;
        total.latencies_us.extend(result.latencies_us);
        total.points += result.points;
        total.values += result.values;
        total.requests += result.requests;
        total.errors += result.errors;
        total.shed += result.shed;
        total.auth_refused = total.auth_refused.or(result.auth_refused);
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    if let Some(status) = total.auth_refused {
        bail!("the server answered {status} to the credentials: pass a token with the write scope (--token or AUGUR_TOKEN)");
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    total.latencies_us.sort_unstable();
    let percentile = |p: f64| percentile_ms(&total.latencies_us, p);
    Ok(Report {
        points_per_s: total.points as f64 / elapsed,
        values_per_s: total.values as f64 / elapsed,
        points_total: total.points,
        values_total: total.values,
        requests: total.requests,
        errors: total.errors,
        shed: total.shed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        max_ms: percentile(1.0),
        duration_s: elapsed,
        protocol: options.protocol,
        connections: options.connections,
        batch: options.batch,
        gzip: options.gzip,
    })
}

async fn connect(target: &Target) -> std::io::Result<Sender> {
    match &target.http {
        Some(request) => Sender::http(target.addr, request.clone()).await,
        None => Sender::tcp(target.addr).await,
    }
}

async fn drive(
    index: usize,
    options: &LoadgenOptions,
    target: &Target,
    live: &Live,
    deadline: Instant,
) -> ConnectionResult {
    let mut result = ConnectionResult::default();
    let first_host = index * options.hosts / options.connections;
    let fleet = Fleet::new(options.hosts, options.regions, options.fields, first_host);
    let mut fleet = Renderer::new(options.protocol.format(), fleet);
    let values_per_batch = (options.batch * fleet.fields()) as u64;
    let mut pacing = (options.rate > 0).then(|| {
        let per_connection = options.rate as f64 / options.connections as f64;
        let mut interval = tokio::time::interval(Duration::from_secs_f64(options.batch as f64 / per_connection));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut sender = None;
    let mut text = Vec::with_capacity(options.batch * 400);
    while Instant::now() < deadline {
        if let Some(interval) = &mut pacing {
            interval.tick().await;
        }
        let Some(active) = &mut sender else {
            match connect(target).await {
                Ok(connected) => sender = Some(connected),
                Err(_) => {
                    result.errors += 1;
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        let now = now_nanos();
        fleet.batch(options.batch, now, &mut text);
        let body = if options.gzip {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 4), flate2::Compression::fast());
            let _ = encoder.write_all(&text);
            Bytes::from(encoder.finish().unwrap_or_default())
        } else {
            Bytes::from(std::mem::replace(&mut text, Vec::with_capacity(options.batch * 400)))
        };
        let sent = Instant::now();
        result.requests += 1;
        live.requests.fetch_add(1, Ordering::Relaxed);
        match active.send(body).await {
            Ok(Ack::Stored) => {
                let micros = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                result.latencies_us.push(micros);
                result.points += options.batch as u64;
                result.values += values_per_batch;
                live.acknowledged(options.batch as u64, values_per_batch, micros);
            }
            Ok(Ack::Refused(status @ (401 | 403))) => {
                // Sending more cannot help: the credentials are wrong.
                result.auth_refused = Some(status);
                break;
            }
            Ok(Ack::Refused(status)) => {
                result.errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
                if status == 503 {
                    result.shed += 1;
                    live.shed.fetch_add(1, Ordering::Relaxed);
                }
                if status == 503 || status == 429 {
                    // Back off like a client would, but briefly: the load must stay high.
                    tokio::time::sleep(SHED_BACKOFF).await;
                }
            }
            Err(_) => {
                result.errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
        }
    }
    result
}
