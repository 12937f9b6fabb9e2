//! Augur's storage tier: where results leave the engine.
//!
//! It speaks Arrow and knows nothing of the ingest tier or the engine. The engine hands every
//! output (raw points, closed windows) to a [`sink::Sink`] as Arrow `RecordBatch`es in the schemas
//! defined here; the Parquet sink keeps everything (cold), the PostgreSQL sink
//! keeps rollups for dashboards (hot).
//!
//! # Layout
//! - [`schema`]: the Arrow schema of each output kind, documented column by column.
//! - [`sketch`]: `DdSketch`, the mergeable quantile sketch stored with every rollup, and its bytes.
//! - [`sink`]: the `Sink` trait outputs go through, and the in-memory, null and fan-out sinks.
//! - [`parquet`]: the Parquet sink: a Hive-partitioned tree of atomically written files.
//! - [`postgres`]: the PostgreSQL sink: sharded hot tier with a spool per shard, and the query fan-out.
//! - [`exposition`]: the Prometheus text format every `render_metrics` writes.
//! - [`durable`]: files written atomically and durably (temporary name, fsync, rename, fsync).
//! - [`error`]: what can go wrong while storing.

pub mod cache;
pub mod durable;
pub mod error;
pub mod exposition;
pub mod parquet;
pub mod postgres;
pub mod schema;
pub mod sink;
pub mod sketch;

/// `nanos` since the Unix epoch in RFC 3339, UTC, with milliseconds: `2026-11-23T04:00:00.000Z`.
pub fn rfc3339(nanos: i64) -> String {
    let millis = nanos.div_euclid(1_000_000);
    let (day, rest) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        parquet::layout::date(day * 86_400_000_000_000),
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// The wall clock in ns since the Unix epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
