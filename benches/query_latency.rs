//! Query API latency over the hot tier with 100k series loaded: p50/p99 of `/api/v1/latest` for one
//! host and of a 24 h, 1-minute rollup query for one host, through real HTTP against two
//! throwaway PostgreSQL shards this benchmark starts and fills through the PostgreSQL sink.
//!
//! `cargo bench -p augur-suite --bench query_latency` (about a minute to load, then the queries).
//! Percentiles rather than criterion's mean: the goal is a p99.

use std::time::{Duration, Instant};

use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::rollup::RollupBuilder;
use augur_engine::window::{Resolution, Windows};
use augur_storage::postgres::{HotQuery, PostgresConfig, PostgresSink, ShardConfig};
use augur_storage::sink::Sink;
use augur_suite::{http, postgres_shards, Batcher, TempDir};

const HOSTS: usize = 100_000;
const FIELDS: usize = 8;
/// Hosts that also get 24 h of 1-minute rollups.
const HISTORY_HOSTS: usize = 100;
const SECOND: i64 = 1_000_000_000;
const QUERIES: usize = 300;

/// Feeds `points` into windows of `resolution` one window at a time and hands the closed windows
/// to `sink` in batches of at most 100k rows.
fn load(sink: &PostgresSink, resolution: Duration, hosts: usize, times: impl Iterator<Item = i64>) -> usize {
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(hosts, 4, FIELDS, 0));
    let mut windows = Windows::new(vec![Resolution::new(resolution)]);
    let mut out = RollupBuilder::default();
    let mut body = Vec::new();
    let mut rows = 0;
    let mut send = |out: &mut RollupBuilder| {
        let batch = out.finish().expect("rollups");
        for start in (0..batch.num_rows()).step_by(100_000) {
            let part = batch.slice(start, 100_000.min(batch.num_rows() - start));
            rows += part.num_rows();
            sink.rollups(1, part).expect("sink takes rollups");
        }
    };
    for time in times {
        for first in (0..hosts).step_by(5000) {
            fleet.batch(5000.min(hosts - first), time, &mut body);
            batcher.batch(&body).iter().for_each(|p| windows.add(&p));
        }
        // Closes the windows before this one.
        windows.close(time + 1, false, &mut out);
        send(&mut out);
    }
    windows.close(i64::MAX, true, &mut out);
    send(&mut out);
    rows
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() * 99 / 100])
}

fn main() {
    let shards = postgres_shards("latency", 2);
    let dir = TempDir::new("query-latency");
    let config = PostgresConfig {
        shards: shards
            .iter()
            .enumerate()
            .map(|(i, s)| ShardConfig { name: format!("shard-{i}"), url: s.url("augur") })
            .collect(),
        ..PostgresConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sink = PostgresSink::start(&config, &dir.0, 0, runtime.handle()).expect("sink");
    let now = augur_storage::now_nanos();
    let day_start = now - now.rem_euclid(3600 * SECOND) - 25 * 3600 * SECOND;

    let started = Instant::now();
    let minutes = (0..24 * 60).map(|m| day_start + m * 60 * SECOND);
    let history = load(&sink, Duration::from_secs(60), HISTORY_HOSTS, minutes);
    let recent_start = now - now.rem_euclid(10 * SECOND) - 120 * SECOND;
    let recent = load(&sink, Duration::from_secs(10), HOSTS, (0..6).map(|w| recent_start + w * 10 * SECOND));
    sink.flush().expect("flush");
    println!(
        "loaded {history} 1m rows ({HISTORY_HOSTS} hosts × 24 h) and {recent} 10s rows ({HOSTS} hosts × {FIELDS} fields × 6 windows) in {:.1?}",
        started.elapsed()
    );

    let hot = HotQuery::new(&config).expect("pools");
    let resolutions = [10, 60, 3600].map(|s| Resolution::new(Duration::from_secs(s))).to_vec();
    let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0))).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = augur_engine::api::routes(Some(hot), resolutions);
    runtime.spawn(async move { axum_serve(listener, app).await });

    let measure = |name: &str, path: &dyn Fn(usize) -> String, expect_rows: usize| {
        let mut samples = Vec::with_capacity(QUERIES);
        for i in 0..QUERIES + 20 {
            let path = path(i);
            let began = Instant::now();
            let (status, body) = http(addr, "GET", &path, b"");
            let took = began.elapsed();
            assert_eq!(status, 200, "{path}: {body}");
            let rows = serde_json::from_str::<serde_json::Value>(&body).expect("json").as_array().map_or(0, Vec::len);
            assert_eq!(rows, expect_rows, "{path}");
            if i >= 20 {
                samples.push(took); // the first 20 warm the pools and caches
            }
        }
        let (p50, p99) = percentiles(samples);
        println!("{name}: p50 {:.1} ms, p99 {:.1} ms over {QUERIES} queries", ms(p50), ms(p99));
    };
    let start = rfc3339(day_start);
    let end = rfc3339(day_start + 24 * 3600 * SECOND);
    measure(
        "latest, one host (all fields)",
        &|i| format!("/api/v1/latest?measurement=cpu&tag.hostname=host_{}", (i * 7919) % HOSTS),
        FIELDS,
    );
    measure(
        "rollups, one host, one field, 24 h at 1m",
        &move |i| {
            format!(
                "/api/v1/rollups?measurement=cpu&tag.hostname=host_{}&field=usage_user&resolution=1m&start={start}&end={end}",
                i % HISTORY_HOSTS
            )
        },
        24 * 60,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    axum::serve(listener, app).await.expect("serve");
}

/// RFC 3339 of a whole second.
fn rfc3339(nanos: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", nanos / SECOND), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}
