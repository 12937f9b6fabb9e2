//! Augur's storage tier: where results leave the engine.
//!
//! It speaks Arrow and knows nothing of the ingest tier or the engine. The engine hands every
//! output (raw points, closed windows) to a [`sink::Sink`] as Arrow `RecordBatch`es in the schemas
//! defined here; the Parquet (cold) and PostgreSQL (hot) sinks arrive with the storage issues.
//!
//! # Layout
//! - [`schema`]: the Arrow schema of each output kind, documented column by column.
//! - [`sketch`]: `DdSketch`, the mergeable quantile sketch stored with every rollup, and its bytes.
//! - [`sink`]: the `Sink` trait outputs go through, and the in-memory, null and fan-out sinks.
//! - [`parquet`]: the Parquet sink: a Hive-partitioned tree of atomically written files.
//! - [`error`]: what can go wrong while storing.

pub mod error;
pub mod parquet;
pub mod schema;
pub mod sink;
pub mod sketch;
