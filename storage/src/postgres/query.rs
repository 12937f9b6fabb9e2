//! Reading the hot tier: every query goes to all shards at once (a series' rows may live on
//! several after the shard map grew), each with a timeout; results are merged here. A shard that
//! fails or times out fails the query with its name, never a silently partial answer.
//!
//! Every value reaches SQL as a bind parameter; the statements are constants.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, Object, Pool, Runtime};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_postgres::NoTls;

use super::config::PostgresConfig;
use super::copy::time;
use crate::error::StorageError;

const SERIES: &str = "SELECT id, series_key, measurement, region, tags::text FROM series
    WHERE ($1::text IS NULL OR measurement = $1) AND ($2::text IS NULL OR region = $2)
      AND tags @> $3::text::jsonb
    ORDER BY series_key LIMIT $4";

const ROLLUPS: &str = "SELECT s.series_key, r.field, r.resolution, r.window_start, r.window_end, r.count,
        r.sum, r.min, r.max, r.mean, r.stddev, r.first, r.last, r.p50, r.p90, r.p95, r.p99, r.partial
    FROM rollups r JOIN series s ON s.id = r.series_id
    WHERE r.series_id = ANY($1) AND r.resolution = $2 AND r.window_start >= $3 AND r.window_start < $4
      AND ($5::text IS NULL OR r.field = $5)
    LIMIT $6";

/// The newest window of each series holding the field asked for (any field when none is), found
/// with one backward probe of the primary key, then that window's rows.
const LATEST: &str = "SELECT s.series_key, r.field, r.window_start, r.last_time, r.kind, r.last,
        r.int_last::text, r.last_string
    FROM series s
    CROSS JOIN LATERAL (SELECT max(window_start) AS start FROM rollups
                        WHERE series_id = s.id AND resolution = $2 AND window_start >= $3
                          AND ($4::text IS NULL OR field = $4)) newest
    JOIN rollups r ON r.series_id = s.id AND r.resolution = $2 AND r.window_start = newest.start
    WHERE s.id = ANY($1) AND ($4::text IS NULL OR r.field = $4)";

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The filter matches more series than a query may read (the user's to narrow).
    #[error("the filter matches more than {limit} series; narrow it with measurement, region or tag.<key>")]
    TooManySeries {
        /// `postgres.max-query-series`.
        limit: usize,
    },
    /// The answer would hold more rows than a query may return.
    #[error("the query would return up to {rows} rows ({series} series × {windows} windows), over the limit of {limit}; narrow the filter or the time range")]
    TooManyRows {
        /// Matching series.
        series: usize,
        /// Windows per series in the range.
        windows: i64,
        /// Their product.
        rows: i64,
        /// The most rows allowed.
        limit: i64,
    },
    /// Shards failed or timed out; no partial answer is given.
    #[error("no complete answer: {}", .0.join("; "))]
    Shards(Vec<String>),
}

/// Which series a query reads.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    /// Only this measurement.
    pub measurement: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only series carrying every one of these tags.
    pub tags: Vec<(String, String)>,
}

/// A row of `GET /api/v1/series`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SeriesRow {
    /// The series id (a u64, as a string: JSON numbers lose precision past 2^53).
    pub id: String,
    /// The canonical series key.
    pub key: String,
    /// Its measurement.
    pub measurement: String,
    /// Its region.
    pub region: String,
    /// Its tags.
    pub tags: serde_json::Value,
}

/// A row of `GET /api/v1/rollups`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RollupRow {
    /// The canonical series key.
    pub series: String,
    /// The field.
    pub field: String,
    /// The resolution, e.g. `1m`.
    pub resolution: String,
    /// Window start, RFC 3339 UTC.
    pub window_start: String,
    /// Window end, RFC 3339 UTC.
    pub window_end: String,
    /// Values in the window.
    pub count: i64,
    /// Sum (numeric fields).
    pub sum: Option<f64>,
    /// Minimum.
    pub min: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub stddev: Option<f64>,
    /// First value by event time.
    pub first: Option<f64>,
    /// Last value by event time.
    pub last: Option<f64>,
    /// Median (within 1 %).
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Emitted at shutdown before the window closed.
    pub partial: bool,
}

/// A row of `GET /api/v1/latest`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatestRow {
    /// The canonical series key.
    pub series: String,
    /// The field.
    pub field: String,
    /// Start of the newest window holding the value.
    pub window_start: String,
    /// Event time of the value.
    pub time: String,
    /// `float`, `integer`, `unsigned`, `boolean` or `string`.
    pub kind: String,
    /// The value (booleans: `null`; see `true_count`/`false_count` in rollups).
    pub value: serde_json::Value,
}

/// Which events `GET /api/v1/predictions` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PredictionFilter {
    /// Only this region.
    pub region: Option<String>,
    /// Only this entity (host).
    pub entity: Option<String>,
    /// Only this kind (`anomaly`, `exhaustion`).
    pub kind: Option<String>,
    /// Events still open or that ended at or after this (ns).
    pub since: i64,
    /// Events whose peak score reached this.
    pub min_score: f64,
    /// At most this many, newest first.
    pub limit: i64,
}

/// An event of `GET /api/v1/predictions`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PredictionRow {
    /// `anomaly` or `exhaustion`.
    pub kind: String,
    /// Its id (the same in Parquet).
    pub event_id: u64,
    /// The canonical series key.
    pub series: String,
    /// The series' measurement and region.
    pub measurement: String,
    /// The region.
    pub region: String,
    /// The entity tag's value.
    pub entity: Option<String>,
    /// The field.
    pub field: String,
    /// When it started.
    pub start: String,
    /// When it ended; `null` while open.
    pub end: Option<String>,
    /// When its score peaked.
    pub peak_time: String,
    /// Its highest score.
    pub peak_score: f64,
    /// The value at the peak.
    pub peak_value: f64,
    /// `open` or `closed`.
    pub state: String,
    /// Exhaustion events: when the field is forecast to reach its limit.
    pub forecast: Option<String>,
}

const PREDICTIONS: &str = "SELECT kind, event_id, series_key, measurement, region, entity, field, start_time,
        end_time, peak_time, peak_score, peak_value, state, forecast_time
    FROM predictions
    WHERE ($1::text IS NULL OR region = $1) AND ($2::text IS NULL OR entity = $2)
        AND ($3::text IS NULL OR kind = $3) AND (end_time IS NULL OR end_time >= $4) AND peak_score >= $5
    ORDER BY start_time DESC, event_id LIMIT $6";

/// Connection pools to every shard, for queries.
#[derive(Debug, Clone)]
pub struct HotQuery {
    shards: Arc<Vec<(String, Pool)>>,
    timeout: Duration,
    max_series: usize,
}

impl HotQuery {
    /// Pools for the shards of `config`; connections open on first use.
    ///
    /// # Errors
    /// When a connection string is invalid.
    pub fn new(config: &PostgresConfig) -> Result<Self, StorageError> {
        let mut shards = Vec::new();
        for shard in &config.shards {
            let mut pg: tokio_postgres::Config = shard.url.parse().map_err(|e| {
                StorageError::Config(format!("postgres shard {:?}: bad connection string: {e}", shard.name))
            })?;
            pg.connect_timeout(config.timeout);
            // The server stops a statement past the timeout too, so a connection given back to
            // the pool after a client-side timeout is not busy with it.
            pg.options(format!("-c statement_timeout={}", config.timeout.as_millis()));
            let pool = Pool::builder(Manager::new(pg, NoTls))
                .max_size(config.pool_size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(config.timeout))
                .create_timeout(Some(config.timeout))
                .build()
                .map_err(|e| StorageError::Config(format!("postgres shard {:?}: {e}", shard.name)))?;
            shards.push((shard.name.clone(), pool));
        }
        Ok(Self { shards: Arc::new(shards), timeout: config.timeout, max_series: config.max_query_series })
    }

    /// The series matching `filter`, by key; at most `postgres.max-query-series`.
    ///
    /// # Errors
    /// [`QueryError::TooManySeries`] past the limit; [`QueryError::Shards`] when a shard fails.
    pub async fn series(&self, filter: &SeriesFilter) -> Result<Vec<SeriesRow>, QueryError> {
        let mut rows: Vec<SeriesRow> = self.matching(filter).await?.into_values().collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
    }

    /// The series matching `filter` by id, over every shard (a series may be on several).
    async fn matching(&self, filter: &SeriesFilter) -> Result<BTreeMap<u64, SeriesRow>, QueryError> {
        let (measurement, region) = (filter.measurement.clone(), filter.region.clone());
        let tags = serde_json::Value::Object(
            filter.tags.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect(),
        )
        .to_string();
        let limit = self.max_series as i64 + 1;
        let per_shard = self
            .fan_out(move |client| {
                let (measurement, region, tags) = (measurement.clone(), region.clone(), tags.clone());
                async move { client.query(SERIES, &[&measurement, &region, &tags, &limit]).await }
            })
            .await?;
        let mut by_id = BTreeMap::new();
        for row in per_shard.into_iter().flatten() {
            let id: i64 = row.get(0);
            let tags: String = row.get(4);
            by_id.entry(id as u64).or_insert_with(|| SeriesRow {
                id: (id as u64).to_string(),
                key: row.get(1),
                measurement: row.get(2),
                region: row.get(3),
                tags: serde_json::from_str(&tags).unwrap_or(serde_json::Value::Null),
            });
        }
        if by_id.len() > self.max_series {
            return Err(QueryError::TooManySeries { limit: self.max_series });
        }
        Ok(by_id)
    }

    /// Rollup rows of the matching series at `resolution` with window starts in `[start, end)`
    /// (ns), of one field or all; sorted by series, field, window start. `windows` is how many
    /// windows of `resolution` the range holds; series × windows may not pass `max_rows`.
    ///
    /// # Errors
    /// As [`HotQuery::series`].
    pub async fn rollups(
        &self,
        filter: &SeriesFilter,
        field: Option<String>,
        resolution: &str,
        (start, end): (i64, i64),
        (windows, max_rows): (i64, i64),
    ) -> Result<Vec<RollupRow>, QueryError> {
        let ids = self.series_ids(filter).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let series = ids.len();
        let rows = (series as i64).saturating_mul(windows);
        if rows > max_rows {
            return Err(QueryError::TooManyRows { series, windows, rows, limit: max_rows });
        }
        let resolution = resolution.to_owned();
        let cap = max_rows.saturating_add(1);
        let per_shard = self
            .fan_out(move |client| {
                let (ids, resolution, field) = (ids.clone(), resolution.clone(), field.clone());
                async move {
                    client.query(ROLLUPS, &[&*ids, &resolution, &time(start), &time(end), &field, &cap]).await
                }
            })
            .await?;
        // Several fields per series (or kinds per field) can pass the estimate above: the cap holds.
        let found: usize = per_shard.iter().map(Vec::len).sum();
        if found as i64 > max_rows {
            return Err(QueryError::TooManyRows { series, windows, rows: found as i64, limit: max_rows });
        }
        let mut rows: Vec<RollupRow> = per_shard
            .into_iter()
            .flatten()
            .map(|r| RollupRow {
                series: r.get(0),
                field: r.get(1),
                resolution: r.get(2),
                window_start: rfc3339(r.get(3)),
                window_end: rfc3339(r.get(4)),
                count: r.get(5),
                sum: r.get(6),
                min: r.get(7),
                max: r.get(8),
                mean: r.get(9),
                stddev: r.get(10),
                first: r.get(11),
                last: r.get(12),
                p50: r.get(13),
                p90: r.get(14),
                p95: r.get(15),
                p99: r.get(16),
                partial: r.get(17),
            })
            .collect();
        rows.sort_by(|a, b| (&a.series, &a.field, &a.window_start).cmp(&(&b.series, &b.field, &b.window_start)));
        Ok(rows)
    }

    /// The newest value of each matching series (one field or all) at `resolution`, from windows
    /// starting at or after `since` (ns).
    ///
    /// # Errors
    /// As [`HotQuery::series`].
    pub async fn latest(
        &self,
        filter: &SeriesFilter,
        field: Option<String>,
        resolution: &str,
        since: i64,
    ) -> Result<Vec<LatestRow>, QueryError> {
        let ids = self.series_ids(filter).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let resolution = resolution.to_owned();
        let per_shard = self
            .fan_out(move |client| {
                let (ids, resolution, field) = (ids.clone(), resolution.clone(), field.clone());
                async move { client.query(LATEST, &[&*ids, &resolution, &time(since), &field]).await }
            })
            .await?;
        // After the shard map grew, a series has rows on several shards: keep the newest per
        // field and kind.
        let mut newest: HashMap<(String, String, String), (SystemTime, LatestRow)> = HashMap::new();
        for r in per_shard.into_iter().flatten() {
            let start: SystemTime = r.get(2);
            let kind: String = r.get(4);
            let value = match kind.as_str() {
                "integer" | "unsigned" => r
                    .get::<_, Option<String>>(6)
                    .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
                    .unwrap_or_default(),
                "string" => r.get::<_, Option<String>>(7).map(serde_json::Value::String).unwrap_or_default(),
                "float" => r.get::<_, Option<f64>>(5).map(serde_json::Value::from).unwrap_or_default(),
                _ => serde_json::Value::Null,
            };
            let row = LatestRow {
                series: r.get(0),
                field: r.get(1),
                window_start: rfc3339(start),
                time: rfc3339(r.get(3)),
                kind,
                value,
            };
            let key = (row.series.clone(), row.field.clone(), row.kind.clone());
            if newest.get(&key).is_none_or(|(seen, _)| start > *seen) {
                newest.insert(key, (start, row));
            }
        }
        let mut rows: Vec<LatestRow> = newest.into_values().map(|(_, row)| row).collect();
        rows.sort_by(|a, b| (&a.series, &a.field, &a.kind).cmp(&(&b.series, &b.field, &b.kind)));
        Ok(rows)
    }

    /// The events matching `filter`, newest first, from every shard.
    ///
    /// # Errors
    /// [`QueryError::Shards`] when a shard does not answer.
    pub async fn predictions(&self, filter: PredictionFilter) -> Result<Vec<PredictionRow>, QueryError> {
        let limit = filter.limit;
        let filter = Arc::new(filter);
        let per_shard = self
            .fan_out(move |client| {
                let f = filter.clone();
                async move {
                    client
                        .query(PREDICTIONS, &[&f.region, &f.entity, &f.kind, &time(f.since), &f.min_score, &f.limit])
                        .await
                }
            })
            .await?;
        let mut rows: Vec<(SystemTime, PredictionRow)> = per_shard
            .into_iter()
            .flatten()
            .map(|r| {
                let start: SystemTime = r.get(7);
                let row = PredictionRow {
                    kind: r.get(0),
                    event_id: r.get::<_, i64>(1) as u64,
                    series: r.get(2),
                    measurement: r.get(3),
                    region: r.get(4),
                    entity: r.get(5),
                    field: r.get(6),
                    start: rfc3339(start),
                    end: r.get::<_, Option<SystemTime>>(8).map(rfc3339),
                    peak_time: rfc3339(r.get(9)),
                    peak_score: r.get(10),
                    peak_value: r.get(11),
                    state: r.get(12),
                    forecast: r.get::<_, Option<SystemTime>>(13).map(rfc3339),
                };
                (start, row)
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.event_id.cmp(&b.1.event_id)));
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(rows.into_iter().map(|(_, row)| row).collect())
    }

    /// Ids (as stored: the u64's bits in a bigint) of the series matching `filter`.
    async fn series_ids(&self, filter: &SeriesFilter) -> Result<Arc<Vec<i64>>, QueryError> {
        Ok(Arc::new(self.matching(filter).await?.into_keys().map(|id| id as i64).collect()))
    }

    /// Runs `query` on every shard at once, each within the timeout.
    async fn fan_out<F, Fut>(&self, query: F) -> Result<Vec<Vec<tokio_postgres::Row>>, QueryError>
    where
        F: Fn(Object) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>> + Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for (index, (name, pool)) in self.shards.iter().enumerate() {
            let (name, pool, query, timeout) = (name.clone(), pool.clone(), query.clone(), self.timeout);
            tasks.spawn(async move {
                let attempt = async {
                    let client = pool.get().await.map_err(|e| e.to_string())?;
                    query(client).await.map_err(|e| super::describe(&e))
                };
                let result = match tokio::time::timeout(timeout, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (index, result.map_err(|e| format!("shard {name:?}: {e}")))
            });
        }
        let mut results = vec![Vec::new(); self.shards.len()];
        let mut failures = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, Ok(rows))) => results[index] = rows,
                Ok((_, Err(failure))) => failures.push(failure),
                Err(panic) => failures.push(format!("a query task failed: {panic}")),
            }
        }
        if failures.is_empty() {
            Ok(results)
        } else {
            failures.sort();
            Err(QueryError::Shards(failures))
        }
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-23T04:00:00.000Z`.
fn rfc3339(time: SystemTime) -> String {
    let nanos = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i64,
        Err(before) => -(before.duration().as_nanos() as i64),
    };
    crate::rfc3339(nanos)
}
