//! `GET /metrics`: Augur's counters in the Prometheus text format.
//!
//! Names follow `augur_<stage>_<noun>_<unit>`, counters end in `_total`. Values are read from the
//! atomics the stages keep (counted per request or batch, never per point).

use std::sync::atomic::Ordering;

use std::sync::Arc;

use augur_ingest::histogram::HistogramSnapshot;
use augur_ingest::wal::group::GroupStats;
use augur_ingest::write::WriteStats;
use augur_ingest::PartitionStats;
use augur_storage::exposition::{header, sample};

use crate::checkpoint::CheckpointStats;
use crate::ops::Ops;
use crate::pipeline::PartitionTotals;
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
            (
                "augur_checkpoint_bytes",
                "gauge",
                "Size of the last checkpoint (its manifest and partition files).",
                &checkpoints.last_bytes,
            ),
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
                "Points in the records replayed at start, fed to the partitions again.",
                &recovery.replayed_points,
            ),
            (
                "augur_recovery_restored_points",
                "gauge",
                "Points in the records replayed at start that their partition's checkpoint already held.",
                &recovery.restored_points,
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
        let name = "augur_wal_commit_duration_seconds";
        header(out, name, "histogram", "Time of each log commit: its write and, with fsync, its fsync.");
        histogram(out, name, &[], &log.commit_seconds.snapshot());
    }
}

/// Appends a histogram's `_bucket`, `_sum` and `_count` samples, each with `labels`.
pub(crate) fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
    let bucket = format!("{name}_bucket");
    let les = snapshot.buckets.iter().map(|(bound, count)| (bound.to_string(), *count));
    for (le, count) in les.chain(std::iter::once(("+Inf".to_owned(), snapshot.count))) {
        let mut with_le = labels.to_vec();
        with_le.push(("le", &le));
        sample(out, &bucket, &with_le, count);
    }
    sample(out, &format!("{name}_sum"), labels, snapshot.sum_seconds);
    sample(out, &format!("{name}_count"), labels, snapshot.count);
}

/// Reads one counter of a partition's router side.
type ReadPartition = fn(&PartitionStats) -> u64;
/// Reads one counter of a partition's pipeline.
type ReadTotals = fn(&PartitionTotals) -> u64;
/// Reads one counter of a protocol's writer.
type ReadWrites = fn(&WriteStats) -> u64;

/// Renders every metric.
pub fn render(ops: &Ops) -> String {
    let mut out = String::new();
    let per_protocol: [(&str, &str, ReadWrites); 6] = [
        ("augur_ingest_points_parsed_total", "Points parsed from well-formed lines, per protocol.", |s| {
            s.points_parsed.load(Ordering::Relaxed)
        }),
        ("augur_ingest_points_accepted_total", "Points admitted into partitions (acknowledged), per protocol.", |s| {
            s.points_accepted.load(Ordering::Relaxed)
        }),
        ("augur_ingest_values_accepted_total", "Field values admitted into partitions, per protocol.", |s| {
            s.values_accepted.load(Ordering::Relaxed)
        }),
        (
            "augur_ingest_points_shed_total",
            "Points refused with 503 because a partition was full, per protocol.",
            |s| s.points_shed.load(Ordering::Relaxed),
        ),
        ("augur_ingest_bytes_total", "Bytes of line protocol received (decompressed), per protocol.", |s| {
            s.bytes_in.load(Ordering::Relaxed)
        }),
        (
            "augur_ingest_log_errors_total",
            "Requests the write-ahead log refused (full, disk error), per protocol.",
            |s| s.log_errors.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in per_protocol {
        header(&mut out, name, "counter", help);
        for (protocol, writer) in &ops.writers {
            sample(&mut out, name, &[("protocol", protocol)], read(writer.stats()));
        }
    }
    let name = "augur_ingest_lines_rejected_total";
    header(&mut out, name, "counter", "Lines rejected, per protocol and reason (invalid, series_limit).");
    for (protocol, writer) in &ops.writers {
        let s = writer.stats();
        for (reason, n) in [("invalid", &s.lines_invalid), ("series_limit", &s.lines_series_limited)] {
            sample(&mut out, name, &[("protocol", protocol), ("reason", reason)], n.load(Ordering::Relaxed));
        }
    }
    let name = "augur_ingest_requests_rejected_total";
    header(&mut out, name, "counter", "HTTP requests refused before parsing, per reason (auth, rate_limit).");
    let rate_limited = crate::ops::total(&ops.writers, |s| s.requests_rate_limited.load(Ordering::Relaxed));
    sample(&mut out, name, &[("reason", "auth")], ops.auth.refused());
    sample(&mut out, name, &[("reason", "rate_limit")], rate_limited);
    ops.requests.render(&mut out);

    let writer = &ops.writers[0].1;
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

    let totals = ops.pipelines.snapshot();
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

    let name = "augur_pipeline_emit_lag_seconds";
    header(
        &mut out,
        name,
        "gauge",
        "Wall clock minus the watermark per partition (how far emitted windows trail now).",
    );
    let now = augur_ingest::point::now_nanos();
    for (partition, t) in totals.iter().enumerate() {
        if t.watermark != i64::MIN {
            sample(
                &mut out,
                name,
                &[("partition", &partition.to_string())],
                now.saturating_sub(t.watermark) as f64 / 1e9,
            );
        }
    }

    let name = "augur_predict_hosts_at_risk";
    header(&mut out, name, "gauge", "Hosts whose failure risk is at least 0.5.");
    sample(&mut out, name, &[], ops.risk.count_at_least(0.5) as u64);

    ops.durability.render(&mut out);
    ops.sink.render_metrics(&mut out);
    out
}
