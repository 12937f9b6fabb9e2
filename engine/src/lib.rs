//! Augur's engine: wires the ingest tier to the pipelines and the stores, and hosts the `augur`
//! binary's commands.
//!
//! # Layout
//! - [`config`]: `augur.toml`, environment overrides, validation.
//! - [`server`]: builds and runs everything from a config; orderly shutdown.
//! - [`recovery`]: the last checkpoint and the write-ahead log at start; the replay.
//! - [`checkpoint`]: barriers, partition states, durable sinks, then the log truncated.
//! - [`pipeline`]: the rayon pool draining the partition channels, one task per partition per tick.
//! - [`watermark`]: a partition's event-time watermark, lateness and the idle rule.
//! - [`window`]: tumbling windows at every resolution; coarse ones merged from fine ones.
//! - [`aggregate`]: the mergeable state of one (series, field, window).
//! - [`snapshot`]: a partition's open windows and watermark as bytes, for checkpoints.
//! - [`rollup`]: closed windows as Arrow batches in the rollup schema.
//! - [`raw`]: raw points as Arrow batches per (measurement, region, hour).
//! - [`stores`]: the Parquet and PostgreSQL sinks opened from the config, behind one sink.
//! - [`api`]: the query API over the hot tier (`/api/v1/series`, `rollups`, `latest`).
//! - [`clock`]: the wall clock, injected so tests control time.
//! - [`lock`]: one process per data dir.
//! - [`ops`]: the operations endpoints: `/metrics`, `/api/v1/partitions`, `/api/v1/status`, the
//!   status page; `augur partitions`.
//! - [`metrics`]: the text `GET /metrics` serves, in the Prometheus format.
//! - [`loadgen`]: `augur loadgen`, the TSBS-shaped load generator.
//! - [`tune`]: `augur tune`, the server under load at several partition counts, measured.
//! - [`local_postgres`]: throwaway PostgreSQL servers for the demo and the tests.
//! - [`demo`]: `augur demo`, the one-command tour.

pub mod aggregate;
pub mod api;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod demo;
pub mod loadgen;
pub mod local_postgres;
pub mod lock;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod predict;
pub mod raw;
pub mod recovery;
pub mod rollup;
pub mod server;
pub mod snapshot;
pub mod stores;
pub mod tune;
pub mod watermark;
pub mod window;
