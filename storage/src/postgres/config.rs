//! `[postgres]`: the hot tier's shards, pools, spool and retention.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[postgres]`. No shards (the default) means no hot tier.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresConfig {
    /// `[[postgres.shards]]`, one per server. A shard may be added at any time; a shard that once
    /// held data must stay listed (queries read every shard).
    pub shards: Vec<ShardConfig>,
    /// `[postgres.region-shards]`: regions whose rows go to some shards only (by name), e.g.
    /// `eu-west-1 = ["pg-eu"]`. Other regions use every shard.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub region_shards: BTreeMap<String, Vec<String>>,
    /// Connections per shard for queries (writes use one more connection of their own).
    pub pool_size: usize,
    /// How long to wait for a shard to connect or answer one statement.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Rollup batches (up to 100k rows, tens of MB each) waiting in memory for a shard's writer;
    /// past it the pipelines wait. The writer drains the queue into PostgreSQL or its spool, so it
    /// only fills when the spool is full.
    pub queue_batches: usize,
    /// Disk each shard's spool (batches kept while the shard is down) may use; past it the
    /// pipelines wait and ingest answers 503.
    pub spool_max_bytes: u64,
    /// Longest wait between attempts to reach a shard that is down.
    #[serde(with = "humantime_serde")]
    pub max_retry_interval: Duration,
    /// Day partitions of rollups that ended longer ago than this are dropped (Parquet keeps them).
    #[serde(with = "humantime_serde")]
    pub hot_retention: Duration,
    /// The most series one query may match; more is a 400 asking for a narrower filter.
    pub max_query_series: usize,
}

/// One `[[postgres.shards]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ShardConfig {
    /// A stable name: the shard map records shards by name, so a shard may move to another URL.
    pub name: String,
    /// `postgres://user:password@host:port/database` or a `key=value` connection string.
    pub url: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            shards: Vec::new(),
            region_shards: BTreeMap::new(),
            pool_size: 4,
            timeout: Duration::from_secs(5),
            queue_batches: 4,
            spool_max_bytes: 1 << 30,
            max_retry_interval: Duration::from_secs(10),
            hot_retention: Duration::from_secs(7 * 86_400),
            max_query_series: 1000,
        }
    }
}

impl PostgresConfig {
    /// Whether the hot tier is configured.
    pub fn enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    /// Every problem with these settings, each prefixed with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.name.is_empty()
                || shard.name.len() > 64
                || !shard.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                problems.push(format!(
                    "postgres.shards[{i}].name = {:?} must be 1 to 64 letters, digits, - or _ (it names a spool folder)",
                    shard.name
                ));
            }
            if let Err(e) = shard.url.parse::<tokio_postgres::Config>() {
                problems.push(format!("postgres.shards[{i}].url is not a PostgreSQL connection string: {e}"));
            }
            if self.shards[..i].iter().any(|other| other.name == shard.name) {
                problems.push(format!("postgres.shards[{i}].name = {:?} is used twice", shard.name));
            }
        }
        for (region, names) in &self.region_shards {
            if names.is_empty() {
                problems.push(format!("postgres.region-shards.{region:?} lists no shard"));
            }
            for name in names.iter().filter(|name| !self.shards.iter().any(|s| &s.name == *name)) {
                problems.push(format!(
                    "postgres.region-shards.{region:?} names {name:?}, which is not in [[postgres.shards]]"
                ));
            }
        }
        if self.pool_size == 0 || self.queue_batches == 0 {
            problems.push("postgres.pool-size and postgres.queue-batches must be at least 1".into());
        }
        if self.timeout.is_zero() || self.max_retry_interval.is_zero() {
            problems.push("postgres.timeout and postgres.max-retry-interval must be above 0".into());
        }
        if self.spool_max_bytes < 1 << 20 {
            problems.push(format!("postgres.spool-max-bytes = {} is under the minimum of 1 MiB", self.spool_max_bytes));
        }
        if self.hot_retention < Duration::from_secs(86_400) {
            problems.push("postgres.hot-retention must be at least 1 day (partitions are days)".into());
        }
        if self.max_query_series == 0 {
            problems.push("postgres.max-query-series must be at least 1".into());
        }
        problems
    }
}
