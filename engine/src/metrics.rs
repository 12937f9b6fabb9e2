//! `GET /metrics`: Augur's counters in the Prometheus text format.
//!
//! Names follow `augur_<stage>_<noun>_<unit>`, counters end in `_total`. Values are read from the
//! atomics the stages keep (counted per request or batch, never per point).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use augur_ingest::Writer;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::pipeline::PipelineStats;

/// Renders every metric.
pub fn render(writer: &Writer, pipelines: &PipelineStats) -> Response {
    let mut out = String::new();
    let ingest = writer.stats();
    let counters = [
        (
            "augur_ingest_points_parsed_total",
            "Points parsed from well-formed lines.",
            &ingest.points_parsed,
        ),
        (
            "augur_ingest_points_accepted_total",
            "Points admitted into partitions (acknowledged).",
            &ingest.points_accepted,
        ),
        (
            "augur_ingest_values_accepted_total",
            "Field values admitted into partitions.",
            &ingest.values_accepted,
        ),
        (
            "augur_ingest_lines_invalid_total",
            "Lines rejected as malformed.",
            &ingest.lines_invalid,
        ),
        (
            "augur_ingest_points_shed_total",
            "Points refused with 503 because a partition was full.",
            &ingest.points_shed,
        ),
        (
            "augur_ingest_bytes_total",
            "Bytes of line protocol received (decompressed).",
            &ingest.bytes_in,
        ),
    ];
    for (name, help, value) in counters {
        metric(
            &mut out,
            name,
            help,
            "counter",
            &[("", value.load(Ordering::Relaxed))],
        );
    }

    let partitions = writer.router().stats();
    let per_partition = |f: &dyn Fn(&augur_ingest::PartitionStats) -> u64| -> Vec<(String, u64)> {
        partitions
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("partition=\"{i}\""), f(s)))
            .collect()
    };
    let router_metrics: [(&str, &str, &str, Vec<(String, u64)>); 5] = [
        (
            "augur_router_points_total",
            "Points admitted per partition.",
            "counter",
            per_partition(&|s| s.points_in.load(Ordering::Relaxed)),
        ),
        (
            "augur_router_batches_total",
            "Batches admitted per partition.",
            "counter",
            per_partition(&|s| s.batches_in.load(Ordering::Relaxed)),
        ),
        (
            "augur_router_rejected_batches_total",
            "Batches refused per partition (full).",
            "counter",
            per_partition(&|s| s.batches_rejected.load(Ordering::Relaxed)),
        ),
        (
            "augur_router_queue_points",
            "Points queued per partition.",
            "gauge",
            per_partition(&|s| s.queued_points.load(Ordering::Relaxed) as u64),
        ),
        (
            "augur_router_queue_bytes",
            "Bytes queued per partition.",
            "gauge",
            per_partition(&|s| s.queued_bytes.load(Ordering::Relaxed) as u64),
        ),
    ];
    for (name, help, kind, values) in &router_metrics {
        let values: Vec<(&str, u64)> = values.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(&mut out, name, help, kind, &values);
    }

    let totals = pipelines.snapshot();
    let processed: Vec<(String, u64)> = totals
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("partition=\"{i}\""), t.points))
        .collect();
    let processed: Vec<(&str, u64)> = processed.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        &mut out,
        "augur_pipeline_points_total",
        "Points processed per partition.",
        "counter",
        &processed,
    );

    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn metric<V: Into<u64> + Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    values: &[(&str, V)],
) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in values {
        let value: u64 = (*value).into();
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
