//! `GET /metrics`: Augur's counters in the Prometheus text format.
//!
//! Names follow `augur_<stage>_<noun>_<unit>`, counters end in `_total`. Values are read from the
//! atomics the stages keep (counted per request or batch, never per point).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use augur_ingest::{PartitionStats, Writer};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::pipeline::PipelineStats;

/// Reads one counter of a partition.
type ReadPartition = fn(&PartitionStats) -> u64;

/// Renders every metric.
pub fn render(writer: &Writer, pipelines: &PipelineStats) -> Response {
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
    ];
    for (name, help, value) in counters {
        header_lines(&mut out, name, help, "counter");
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
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
        header_lines(&mut out, name, help, kind);
        for (partition, stats) in partitions.iter().enumerate() {
            let _ = writeln!(out, "{name}{{partition=\"{partition}\"}} {}", read(stats));
        }
    }

    let name = "augur_pipeline_points_total";
    header_lines(&mut out, name, "Points processed per partition.", "counter");
    for (partition, totals) in pipelines.snapshot().iter().enumerate() {
        let _ = writeln!(out, "{name}{{partition=\"{partition}\"}} {}", totals.points);
    }

    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn header_lines(out: &mut String, name: &str, help: &str, kind: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
