//! Augur's engine: wires the ingest tier to the pipelines and the stores, and hosts the `augur`
//! binary's commands.
//!
//! # Layout
//! - [`config`]: `augur.toml`, environment overrides, validation.
//! - [`server`]: builds and runs everything from a config; orderly shutdown.
//! - [`pipeline`]: the rayon pool draining the partition channels, one task per partition.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`loadgen`]: `augur loadgen`, the TSBS-shaped load generator.
//! - [`demo`]: `augur demo`, the one-command tour.

pub mod config;
pub mod demo;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod server;
