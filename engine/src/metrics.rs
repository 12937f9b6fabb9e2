//! `GET /metrics`: Augur's counters in the Prometheus text format.
//!
//! Names follow `augur_<stage>_<noun>_<unit>`, counters end in `_total`. Values are read from the
//! atomics the stages keep (counted per request or batch, never per point).

use std::sync::atomic::Ordering;

use std::sync::Arc;

use augur_ingest::wal::group::GroupStats;
use augur_ingest::{PartitionStats, Writer};
use augur_storage::exposition::{header, sample};
use augur_storage::sink::Sink;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::checkpoint::CheckpointStats;
use crate::pipeline::{PartitionTotals, PipelineStats};
use crate::predict::risk::RiskBoard;
use crate::recovery::RecoveryStats;

/// The counters of the write-ahead log, the checkpoints and the last recovery.
#[derive(Debug, Clone)]
pub struct Durability {
    /// The log's commit thread.
    pub log: Arc<GroupStats>,
    /// The checkpointer.
    pub checkpoints: Arc<CheckpointStats>,
    /// What the start found and replayed.
    pub recovery: Arc<RecoveryStats>,
}

impl Durability {
    fn render(&self, out: &mut String) {
        let (log, checkpoints, recovery) = (&self.log, &self.checkpoints, &self.recovery);
        let series = [
            (
                "augur_wal_commits_total",
                "counter",
                "Log commits (one write and, with fsync, one fsync each).",
                &log.commits,
            ),
            ("augur_wal_records_total", "counter", "Requests committed to the log.", &log.records),
            ("augur_wal_bytes", "gauge", "Bytes of the log on disk.", &log.bytes),
            ("augur_checkpoints_total", "counter", "Checkpoints recorded since start.", &checkpoints.completed),
            (
                "augur_checkpoint_failures_total",
                "counter",
                "Checkpoint attempts that failed (retried).",
                &checkpoints.failed,
            ),
            ("augur_checkpoint_epoch", "gauge", "Epoch of the last recorded checkpoint.", &checkpoints.epoch),
            (
                "augur_checkpoint_duration_milliseconds",
                "gauge",
                "How long the last checkpoint took.",
                &checkpoints.last_millis,
            ),
            ("augur_checkpoint_bytes", "gauge", "Size of the last checkpoint file.", &checkpoints.last_bytes),
            ("augur_recovery_torn_bytes", "gauge", "Bytes of a torn log tail cut off at start.", &recovery.torn_bytes),
            (
                "augur_recovery_dropped_segments",
                "gauge",
                "Log segments dropped after a torn tail at start.",
                &recovery.dropped_segments,
            ),
            ("augur_recovery_replayed_records", "gauge", "Log records replayed at start.", &recovery.replayed_records),
            (
                "augur_recovery_replayed_points",
                "gauge",
                "Points in the records replayed at start.",
                &recovery.replayed_points,
            ),
            (
                "augur_recovery_skipped_records",
                "gauge",
                "Log records that could not be read at start (logged).",
                &recovery.skipped_records,
            ),
        ];
        for (name, kind, help, value) in series {
            header(out, name, kind, help);
            sample(out, name, &[], value.load(Ordering::Relaxed));
        }
    }
}

/// Reads one counter of a partition's router side.
type ReadPartition = fn(&PartitionStats) -> u64;
/// Reads one counter of a partition's pipeline.
type ReadTotals = fn(&PartitionTotals) -> u64;

/// Renders every metric.
pub fn render(
    writer: &Writer,
    pipelines: &PipelineStats,
    durability: &Durability,
    risk: &RiskBoard,
    sink: &dyn Sink,
) -> Response {
    let mut out = String::new();
    let ingest = writer.stats();
    let counters = [
        ("augur_ingest_points_parsed_total", "Points parsed from well-formed lines.", &ingest.points_parsed),
        (
            "augur_ingest_points_accepted_total",
            "Points admitted into partitions (acknowledged).",
            &ingest.points_accepted,
        ),
        ("augur_ingest_values_accepted_total", "Field values admitted into partitions.", &ingest.values_accepted),
        ("augur_ingest_lines_invalid_total", "Lines rejected as malformed.", &ingest.lines_invalid),
        (
            "augur_ingest_points_shed_total",
            "Points refused with 503 because a partition was full.",
            &ingest.points_shed,
        ),
        ("augur_ingest_bytes_total", "Bytes of line protocol received (decompressed).", &ingest.bytes_in),
        (
            "augur_ingest_log_errors_total",
            "Requests the write-ahead log refused (full, disk error).",
            &ingest.log_errors,
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        sample(&mut out, name, &[], value.load(Ordering::Relaxed));
    }

    let partitions = writer.router().stats();
    let per_partition: [(&str, &str, &str, ReadPartition); 5] = [
        ("augur_router_points_total", "Points admitted per partition.", "counter", |s| {
            s.points_in.load(Ordering::Relaxed)
        }),
        ("augur_router_batches_total", "Batches admitted per partition.", "counter", |s| {
            s.batches_in.load(Ordering::Relaxed)
        }),
        ("augur_router_rejected_batches_total", "Batches refused per partition (full).", "counter", |s| {
            s.batches_rejected.load(Ordering::Relaxed)
        }),
        ("augur_router_queue_points", "Points queued per partition.", "gauge", |s| {
            s.queued_points.load(Ordering::Relaxed) as u64
        }),
        ("augur_router_queue_bytes", "Bytes queued per partition.", "gauge", |s| {
            s.queued_bytes.load(Ordering::Relaxed) as u64
        }),
    ];
    for (name, help, kind, read) in per_partition {
        header(&mut out, name, kind, help);
        for (partition, stats) in partitions.iter().enumerate() {
            sample(&mut out, name, &[("partition", &partition.to_string())], read(stats));
        }
    }

    let totals = pipelines.snapshot();
    let per_pipeline: [(&str, &str, &str, ReadTotals); 12] = [
        ("augur_pipeline_points_total", "Points processed per partition.", "counter", |t| t.points),
        ("augur_pipeline_aggregated_points_total", "Points added to windows per partition.", "counter", |t| {
            t.aggregated
        }),
        ("augur_pipeline_late_points_total", "Points behind the watermark per partition (kept raw).", "counter", |t| {
            t.late
        }),
        ("augur_pipeline_rollup_rows_total", "Closed windows emitted per partition.", "counter", |t| t.rollup_rows),
        ("augur_pipeline_raw_rows_total", "Raw points emitted per partition.", "counter", |t| t.raw_rows),
        ("augur_pipeline_sink_errors_total", "Batches the sink refused per partition.", "counter", |t| t.sink_errors),
        ("augur_pipeline_active_series", "Series with open windows per partition.", "gauge", |t| t.active_series),
        ("augur_pipeline_watermark_seconds", "Event-time watermark per partition (Unix seconds).", "gauge", |t| {
            u64::try_from(t.watermark.max(0) / 1_000_000_000).unwrap_or(0)
        }),
        (
            "augur_predict_scored_values_total",
            "Values scored by the anomaly detectors per partition.",
            "counter",
            |t| t.predict.scored,
        ),
        ("augur_predict_events_opened_total", "Events (anomaly, exhaustion) opened per partition.", "counter", |t| {
            t.predict.opened
        }),
        ("augur_predict_events_closed_total", "Events (anomaly, exhaustion) closed per partition.", "counter", |t| {
            t.predict.closed
        }),
        ("augur_predict_open_events", "Events (anomaly, exhaustion) open now per partition.", "gauge", |t| {
            t.predict.open
        }),
    ];
    for (name, help, kind, read) in per_pipeline {
        header(&mut out, name, kind, help);
        for (partition, t) in totals.iter().enumerate() {
            sample(&mut out, name, &[("partition", &partition.to_string())], read(t));
        }
    }
    let name = "augur_pipeline_late_points_by_region_total";
    header(&mut out, name, "counter", "Points behind the watermark per partition and region.");
    for (partition, t) in totals.iter().enumerate() {
        for (region, n) in &t.late_by_region {
            sample(&mut out, name, &[("partition", &partition.to_string()), ("region", region)], *n);
        }
    }

    let name = "augur_predict_hosts_at_risk";
    header(&mut out, name, "gauge", "Hosts whose failure risk is at least 0.5.");
    sample(&mut out, name, &[], risk.count_at_least(0.5) as u64);

    durability.render(&mut out);
    sink.render_metrics(&mut out);

    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
