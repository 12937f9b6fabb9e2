//! The hot tier: rollups in sharded PostgreSQL, for dashboards and ops (docs/postgres.md).
//!
//! # Layout
//! - [`config`]: `[postgres]` and `[[postgres.shards]]`.
//! - [`shard_map`]: which shard holds a row: rendezvous hashing inside epochs that only grow.
//! - [`sink`]: the [`Sink`](crate::sink::Sink) that splits rollup batches by shard.
//! - [`shard`]: one shard's writer task: connection, circuit breaker, spool replay.
//! - [`spool`]: batches kept on disk, in order, while a shard is down.
//! - [`copy`]: one batch into one shard: binary `COPY` into staging, set-based upsert.
//! - [`series`]: tags read back from a canonical series key.
//! - [`migrations`]: the versioned schema and the day partitions of `rollups`.
//! - [`query`]: the query API's reads, fanned out to every shard.

pub mod config;
pub mod copy;
pub mod migrations;
pub mod query;
pub mod series;
pub mod shard;
pub mod shard_map;
pub mod sink;
pub mod spool;

pub use config::{PostgresConfig, ShardConfig};
pub use query::HotQuery;
pub use sink::PostgresSink;

/// A PostgreSQL error with what the server said (`tokio_postgres` shows only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}
