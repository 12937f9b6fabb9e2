//! The operations endpoints (scope `admin`): `GET /metrics`, `GET /api/v1/partitions`,
//! `GET /api/v1/status` and the status page at `GET /`.
//!
//! # Layout
//! - [`meter`]: samples the counters every second, so rates (points/s per partition and region)
//!   come from measurements rather than from a request's timing.
//! - [`requests`]: the request-latency histogram per endpoint, a layer over every route.
//! - [`client`]: `augur partitions`, which reads `/api/v1/partitions` and prints it as a table.

pub mod client;
pub mod meter;
pub mod requests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use augur_ingest::Writer;
use augur_storage::sink::{ShardHealth, Sink};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::metrics::{self, Durability};
use crate::pipeline::PipelineStats;
use crate::predict::risk::{RiskBoard, RiskRow};

use self::meter::LoadMeter;
use self::requests::RequestMetrics;

/// The page, embedded: one file of HTML, CSS and script, no build step, nothing fetched from
/// elsewhere.
const STATUS_PAGE: &str = include_str!("status.html");

/// What the operations endpoints read.
#[derive(Clone)]
pub struct Ops {
    /// One writer per protocol (`http`, `tcp`, `replay`), each with its own counters.
    pub writers: Vec<(&'static str, Writer)>,
    /// The pipelines' totals.
    pub pipelines: Arc<PipelineStats>,
    /// The log, checkpoints and recovery.
    pub durability: Durability,
    /// Failure risk per host.
    pub risk: Arc<RiskBoard>,
    /// Where outputs go (its counters and shard health).
    pub sink: Arc<dyn Sink>,
    /// Rates.
    pub meter: Arc<LoadMeter>,
    /// Request latencies and refusals.
    pub requests: Arc<RequestMetrics>,
    /// The tokens (for the count of refusals).
    pub auth: Arc<augur_ingest::auth::Auth>,
    /// When the server started.
    pub started: Instant,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("started", &self.started).finish_non_exhaustive()
    }
}

/// The routes; wrap them in `auth::require(…, Scope::Admin)`.
pub fn routes(ops: Ops) -> axum::Router {
    axum::Router::new()
        .route("/", get(page))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/partitions", get(partitions))
        .route("/api/v1/status", get(status))
        .with_state(ops)
}

async fn page() -> Html<&'static str> {
    Html(STATUS_PAGE)
}

async fn render_metrics(State(ops): State<Ops>) -> Response {
    let text = metrics::render(&ops);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// One partition's load, as `GET /api/v1/partitions` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionLoad {
    /// Its index.
    pub partition: usize,
    /// Points admitted per second over the meter's window.
    pub points_per_second: f64,
    /// Points admitted since start.
    pub points_total: u64,
    /// Points queued, not yet drained.
    pub queue_points: u64,
    /// Bytes queued.
    pub queue_bytes: u64,
    /// Series with open windows.
    pub active_series: u64,
    /// Points behind its watermark since start.
    pub late_points_total: u64,
    /// Wall clock minus its watermark; `None` before its first point.
    pub emit_lag_seconds: Option<f64>,
}

/// `GET /api/v1/partitions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionsReport {
    /// The span the rates are measured over.
    pub window_seconds: f64,
    /// The busiest partition's rate over the mean rate; `None` while idle. 1.0 is perfectly even.
    pub skew: Option<f64>,
    /// Per partition.
    pub partitions: Vec<PartitionLoad>,
}

impl Ops {
    fn partitions(&self) -> PartitionsReport {
        let rates = self.meter.rates();
        let router = self.writers[0].1.router().stats();
        let totals = self.pipelines.snapshot();
        let now = augur_ingest::point::now_nanos();
        let partitions: Vec<PartitionLoad> = router
            .iter()
            .enumerate()
            .map(|(partition, stats)| {
                let pipeline = totals.get(partition);
                let watermark = pipeline.map_or(i64::MIN, |t| t.watermark);
                PartitionLoad {
                    partition,
                    points_per_second: rates.partitions.get(partition).copied().unwrap_or(0.0),
                    points_total: stats.points_in.load(std::sync::atomic::Ordering::Relaxed),
                    queue_points: stats.queued_points.load(std::sync::atomic::Ordering::Relaxed) as u64,
                    queue_bytes: stats.queued_bytes.load(std::sync::atomic::Ordering::Relaxed) as u64,
                    active_series: pipeline.map_or(0, |t| t.active_series),
                    late_points_total: pipeline.map_or(0, |t| t.late),
                    emit_lag_seconds: (watermark != i64::MIN).then(|| now.saturating_sub(watermark) as f64 / 1e9),
                }
            })
            .collect();
        PartitionsReport { window_seconds: rates.window_seconds, skew: skew(&rates.partitions), partitions }
    }
}

/// One ingest counter summed over every protocol's writer.
pub fn total(writers: &[(&'static str, Writer)], read: fn(&augur_ingest::write::WriteStats) -> u64) -> u64 {
    writers.iter().map(|(_, w)| read(w.stats())).sum()
}

/// Max over mean of `loads`; `None` when they are all zero.
pub fn skew(loads: &[f64]) -> Option<f64> {
    let mean = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
    (mean > 0.0).then(|| loads.iter().copied().fold(0.0, f64::max) / mean)
}

async fn partitions(State(ops): State<Ops>) -> Json<PartitionsReport> {
    Json(ops.partitions())
}

#[derive(Debug, Serialize)]
struct Status {
    now_ms: i64,
    uptime_seconds: f64,
    ingest: IngestStatus,
    partitions: Vec<PartitionLoad>,
    skew: Option<f64>,
    regions: Vec<RegionStatus>,
    shards: Vec<ShardHealth>,
    risk: Vec<RiskRow>,
}

#[derive(Debug, Serialize)]
struct IngestStatus {
    points_accepted_total: u64,
    values_accepted_total: u64,
    points_rejected_total: u64,
    late_points_total: u64,
    bytes_total: u64,
    points_per_second: f64,
    values_per_second: f64,
}

#[derive(Debug, Serialize)]
struct RegionStatus {
    region: String,
    points_total: u64,
    points_per_second: f64,
    late_points_total: u64,
}

/// Everything the status page shows, in one read.
async fn status(State(ops): State<Ops>) -> Json<impl Serialize> {
    use std::sync::atomic::Ordering::Relaxed;
    let rates = ops.meter.rates();
    let PartitionsReport { partitions, skew, .. } = ops.partitions();
    let totals = ops.pipelines.snapshot();
    let mut regions: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for t in &totals {
        for (region, n) in &t.by_region {
            regions.entry(region).or_default().0 += n;
        }
        for (region, n) in &t.late_by_region {
            regions.entry(region).or_default().1 += n;
        }
    }
    let sum = |read| total(&ops.writers, read);
    let ingest = IngestStatus {
        points_accepted_total: sum(|s| s.points_accepted.load(Relaxed)),
        values_accepted_total: sum(|s| s.values_accepted.load(Relaxed)),
        points_rejected_total: sum(|s| {
            s.points_shed.load(Relaxed) + s.lines_invalid.load(Relaxed) + s.lines_series_limited.load(Relaxed)
        }),
        late_points_total: totals.iter().map(|t| t.late).sum(),
        bytes_total: sum(|s| s.bytes_in.load(Relaxed)),
        points_per_second: rates.points,
        values_per_second: rates.values,
    };
    Json(Status {
        now_ms: augur_ingest::point::now_nanos() / 1_000_000,
        uptime_seconds: ops.started.elapsed().as_secs_f64(),
        ingest,
        partitions,
        skew,
        regions: regions
            .into_iter()
            .map(|(region, (points, late))| RegionStatus {
                region: region.to_owned(),
                points_total: points,
                points_per_second: rates.regions.get(region).copied().unwrap_or(0.0),
                late_points_total: late,
            })
            .collect(),
        shards: ops.sink.shards(),
        risk: ops.risk.top(None, 10),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_max_over_mean_and_undefined_when_idle() {
        assert_eq!(skew(&[0.0, 0.0]), None);
        assert_eq!(skew(&[]), None);
        assert_eq!(skew(&[10.0, 10.0]), Some(1.0));
        assert_eq!(skew(&[30.0, 10.0, 20.0]), Some(1.5));
    }
}
