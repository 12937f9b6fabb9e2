//! Augur's ingest tier: from bytes on a socket to batches in partition channels.
//!
//! Agents send InfluxDB line protocol over HTTP or TCP. The listeners read bodies within limits,
//! the writer parses them on a rayon pool into one columnar batch per partition, and the router
//! admits a request's batches into bounded partition channels all together or not at all. The
//! engine owns the receiving ends.
//!
//! # Layout
//! - [`config`]: the `[model]`, `[router]`, `[http]`, `[tcp]`, `[auth]` and `[limits]` sections
//!   and their validation.
//! - [`http`]: the HTTP listener: `/write`, `/api/v2/write`, `/health`, `/ping`.
//! - [`auth`]: tokens and scopes, read from the credentials InfluxDB clients and browsers send.
//! - [`limits`]: per-tenant rate limits and new-series budgets.
//! - [`tls`]: the HTTP listener's optional TLS (rustls), from PEM files.
//! - [`tcp`]: the newline-delimited TCP listeners: line protocol and Graphite.
//! - [`udp`]: the StatsD listener, aggregating on a thread of its own.
//! - [`listener`]: binding with a deep accept queue, and the accept loop both listeners share:
//!   connection cap, accept errors, orderly stop.
//! - [`mod@write`]: parse a body into per-partition batches, then admit them.
//! - [`line_protocol`]: the zero-copy line-protocol parser and renderer.
//! - [`protocols`]: the other protocols agents speak, each turned into line protocol.
//! - [`point`]: the data model: typed field values, points, precision.
//! - [`series`]: canonical series keys and stable series ids.
//! - [`batch`]: `PointBatch`, the columnar unit that travels through the channels.
//! - [`router`]: jump-hash placement, partition channels, all-or-nothing admission.
//! - [`histogram`]: latency histograms for `/metrics` (requests, log commits).
//! - [`wal`]: the write-ahead log: segments, group commit, recovery, checkpoints.
//! - [`shutdown`]: the shutdown signal every long-lived task listens to.

pub mod auth;
pub mod batch;
pub mod config;
pub mod histogram;
pub mod http;
pub mod limits;
pub mod line_protocol;
pub mod listener;
pub mod point;
pub mod protocols;
pub mod router;
pub mod series;
pub mod shutdown;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod wal;
pub mod write;

pub use batch::{PointBatch, PointView, RegionRule};
pub use point::{FieldValue, Point, Precision};
pub use router::{Barrier, Delivery, PartitionReceiver, PartitionStats, Reservation, Router};
pub use series::SeriesId;
pub use write::Writer;
