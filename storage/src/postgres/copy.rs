//! Writing a rollup batch to one shard: binary `COPY` into temporary staging tables, then one
//! set-based upsert per table, in one transaction. Replaying a batch leaves the same rows: the
//! upsert replaces a row with the same natural key by the same values.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::{
    Array, BinaryArray, BooleanArray, Decimal128Array, Float64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use bytes::{BufMut, BytesMut};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::Client;

use super::series::tags_json;
use crate::schema::{text_column, typed_column, Text};

/// Per connection: the staging tables, emptied at each commit.
const CREATE_STAGING: &str = "
    CREATE TEMP TABLE IF NOT EXISTS rollups_staging (LIKE rollups) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS series_staging
        (id bigint, series_key text, measurement text, region text, tags text) ON COMMIT DELETE ROWS;";

const UPSERT_SERIES: &str = "INSERT INTO series SELECT id, series_key, measurement, region, tags::jsonb
    FROM series_staging ON CONFLICT (id) DO NOTHING";

const UPSERT_ROLLUPS: &str = "INSERT INTO rollups SELECT * FROM rollups_staging
    ON CONFLICT (series_id, resolution, window_start, field, kind) DO UPDATE SET
        window_end = EXCLUDED.window_end, count = EXCLUDED.count,
        sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, mean = EXCLUDED.mean,
        stddev = EXCLUDED.stddev, first = EXCLUDED.first, last = EXCLUDED.last,
        int_sum = EXCLUDED.int_sum, int_min = EXCLUDED.int_min, int_max = EXCLUDED.int_max,
        int_first = EXCLUDED.int_first, int_last = EXCLUDED.int_last,
        first_time = EXCLUDED.first_time, last_time = EXCLUDED.last_time,
        true_count = EXCLUDED.true_count, false_count = EXCLUDED.false_count,
        last_string = EXCLUDED.last_string, p50 = EXCLUDED.p50, p90 = EXCLUDED.p90,
        p95 = EXCLUDED.p95, p99 = EXCLUDED.p99, sketch = EXCLUDED.sketch, partial = EXCLUDED.partial";

/// Column types of `rollups`, in table order.
const ROLLUP_TYPES: [Type; 30] = [
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::INT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::NUMERIC,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::BYTEA,
    Type::BOOL,
];

/// Creates this connection's staging tables (once per connection).
///
/// # Errors
/// When the database refuses.
pub async fn prepare(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(CREATE_STAGING).await
}

/// What [`write()`] could not do.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The batch is not in the rollup schema (a bug upstream); retrying cannot help.
    #[error(transparent)]
    Schema(#[from] crate::error::StorageError),
    /// The database refused or the connection failed.
    #[error("{}", super::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The shard did not answer in time.
    #[error("the shard did not answer in time")]
    Timeout,
    /// The shard cannot be used (connecting, migrating or preparing failed): not the batch's fault.
    #[error("shard unusable: {0}")]
    Unusable(String),
}

impl WriteError {
    /// Whether the same batch may succeed later: the connection failed, the server is starting,
    /// stopping, out of resources or resolving a conflict, or the shard's setup failed. Any other
    /// refusal would repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Schema(_) => false,
            Self::Timeout | Self::Unusable(_) => true,
            Self::Postgres(error) => error.code().is_none_or(|code| {
                let code = code.code();
                // 23514: no partition for a row, when a day partition vanished under a cached
                // connection; the retry reconnects and recreates it.
                ["08", "40", "53", "57", "58"].iter().any(|class| code.starts_with(class))
                    || code == "55P03"
                    || code == "23514"
            }),
        }
    }
}

/// Upserts `batch` (in the rollup schema) and the series rows of ids not in `known` into the
/// shard behind `client`, in one transaction; then adds those ids to `known`. Returns the rows
/// written. The day partitions the rows fall in must exist.
///
/// # Errors
/// When the batch is malformed or the database refuses; nothing is written then.
pub async fn write(client: &mut Client, batch: &RecordBatch, known: &mut HashSet<u64>) -> Result<u64, WriteError> {
    let columns = Columns::of(batch)?;
    let mut new_series = Vec::new();
    let mut seen = HashSet::new();
    for row in 0..batch.num_rows() {
        let id = columns.series_id.value(row);
        if !known.contains(&id) && seen.insert(id) {
            new_series.push(row);
        }
    }
    let tx = client.transaction().await?;
    if !new_series.is_empty() {
        let sink = tx.copy_in("COPY series_staging FROM STDIN (FORMAT binary)").await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT]);
        tokio::pin!(writer);
        for &row in &new_series {
            let key = columns.series_key.value(row);
            let tags = tags_json(key);
            writer
                .as_mut()
                .write(&[
                    &(columns.series_id.value(row) as i64),
                    &key,
                    &columns.measurement.value(row),
                    &columns.region.value(row),
                    &tags,
                ])
                .await?;
        }
        writer.finish().await?;
        tx.execute(UPSERT_SERIES, &[]).await?;
    }
    copy_rows(&tx, "rollups_staging", &columns, batch.num_rows()).await?;
    tx.execute(UPSERT_ROLLUPS, &[]).await?;
    tx.commit().await?;
    known.extend(new_series.iter().map(|&row| columns.series_id.value(row)));
    Ok(batch.num_rows() as u64)
}

/// Upserts prediction rows (in `prediction_schema`), one statement per row in one transaction:
/// events are few. A row never reopens a closed event, nor replaces a newer change of its event
/// (`updated`), so a replay or a spooled batch arriving late changes nothing. Returns the rows
/// written.
///
/// # Errors
/// When the batch is malformed or the database refuses; nothing is written then.
pub async fn write_predictions(client: &mut Client, batch: &RecordBatch) -> Result<u64, WriteError> {
    let text = |name| typed_column::<StringArray>(batch, name);
    let times = |name| typed_column::<TimestampNanosecondArray>(batch, name);
    let floats = |name| typed_column::<Float64Array>(batch, name);
    let (ids, series) =
        (typed_column::<UInt64Array>(batch, "event_id")?, typed_column::<UInt64Array>(batch, "series_id")?);
    let (kind, key, measurement, region, entity, field, state) = (
        text("kind")?,
        text("series_key")?,
        text("measurement")?,
        text("region")?,
        text("entity")?,
        text("field")?,
        text("state")?,
    );
    let (start, end, peak_time, forecast) = (times("start")?, times("end")?, times("peak_time")?, times("forecast")?);
    let updated = times("updated")?;
    let (peak_score, peak_value) = (floats("peak_score")?, floats("peak_value")?);
    let tx = client.transaction().await?;
    let statement = tx.prepare(UPSERT_PREDICTION).await?;
    for row in 0..batch.num_rows() {
        let entity = entity.is_valid(row).then(|| entity.value(row));
        let end = end.is_valid(row).then(|| time(end.value(row)));
        let forecast = forecast.is_valid(row).then(|| time(forecast.value(row)));
        tx.execute(
            &statement,
            &[
                &kind.value(row),
                &(ids.value(row) as i64),
                &(series.value(row) as i64),
                &key.value(row),
                &measurement.value(row),
                &region.value(row),
                &entity,
                &field.value(row),
                &time(start.value(row)),
                &end,
                &time(peak_time.value(row)),
                &peak_score.value(row),
                &peak_value.value(row),
                &state.value(row),
                &forecast,
                &time(updated.value(row)),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(batch.num_rows() as u64)
}

const UPSERT_PREDICTION: &str = "INSERT INTO predictions (kind, event_id, series_id, series_key, measurement, region,
     entity, field, start_time, end_time, peak_time, peak_score, peak_value, state, forecast_time, updated_time)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
     ON CONFLICT (kind, event_id) DO UPDATE SET end_time = EXCLUDED.end_time, peak_time = EXCLUDED.peak_time,
         peak_score = EXCLUDED.peak_score, peak_value = EXCLUDED.peak_value, state = EXCLUDED.state,
         forecast_time = EXCLUDED.forecast_time, updated_time = EXCLUDED.updated_time
     WHERE predictions.state <> 'closed'
         AND (predictions.updated_time IS NULL OR EXCLUDED.updated_time >= predictions.updated_time)";

/// The baseline [`write()`] is measured against (`benches/postgres_write.rs`): the same rows by
/// binary `COPY` straight into `rollups`, no staging and no upsert, so it fails on a key that is
/// already there. The day partitions must exist.
///
/// # Errors
/// When the batch is malformed or the database refuses.
pub async fn copy_without_upsert(client: &mut Client, batch: &RecordBatch) -> Result<u64, WriteError> {
    let columns = Columns::of(batch)?;
    let tx = client.transaction().await?;
    copy_rows(&tx, "rollups", &columns, batch.num_rows()).await?;
    tx.commit().await?;
    Ok(batch.num_rows() as u64)
}

/// Binary `COPY` of every row of `c` into `table` (`rollups` or its staging twin).
async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    table: &str,
    c: &Columns<'_>,
    rows: usize,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(&format!("COPY {table} FROM STDIN (FORMAT binary)")).await?;
    let writer = BinaryCopyInWriter::new(sink, &ROLLUP_TYPES);
    tokio::pin!(writer);
    for row in 0..rows {
        let f = |a: &Float64Array| a.is_valid(row).then(|| a.value(row));
        let n = |a: &Decimal128Array| a.is_valid(row).then(|| Numeric(a.value(row)));
        let u = |a: &UInt64Array| a.is_valid(row).then(|| a.value(row) as i64);
        writer
            .as_mut()
            .write(&[
                &(c.series_id.value(row) as i64),
                &c.field.value(row),
                &c.resolution.value(row),
                &time(c.window_start.value(row)),
                &time(c.window_end.value(row)),
                &c.kind.value(row),
                &(c.count.value(row) as i64),
                &f(c.floats[0]),
                &f(c.floats[1]),
                &f(c.floats[2]),
                &f(c.floats[3]),
                &f(c.floats[4]),
                &f(c.floats[5]),
                &f(c.floats[6]),
                &n(c.ints[0]),
                &n(c.ints[1]),
                &n(c.ints[2]),
                &n(c.ints[3]),
                &n(c.ints[4]),
                &time(c.first_time.value(row)),
                &time(c.last_time.value(row)),
                &u(c.true_count),
                &u(c.false_count),
                &c.last_string.is_valid(row).then(|| c.last_string.value(row)),
                &f(c.quantiles[0]),
                &f(c.quantiles[1]),
                &f(c.quantiles[2]),
                &f(c.quantiles[3]),
                &c.sketch.is_valid(row).then(|| c.sketch.value(row)),
                &c.partial.value(row),
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// The rollup columns [`write()`] reads.
struct Columns<'a> {
    series_id: &'a UInt64Array,
    series_key: Text<'a>,
    measurement: Text<'a>,
    region: Text<'a>,
    field: Text<'a>,
    resolution: Text<'a>,
    window_start: &'a TimestampNanosecondArray,
    window_end: &'a TimestampNanosecondArray,
    kind: Text<'a>,
    count: &'a UInt64Array,
    /// sum, min, max, mean, stddev, first, last.
    floats: [&'a Float64Array; 7],
    /// int_sum, int_min, int_max, int_first, int_last.
    ints: [&'a Decimal128Array; 5],
    first_time: &'a TimestampNanosecondArray,
    last_time: &'a TimestampNanosecondArray,
    true_count: &'a UInt64Array,
    false_count: &'a UInt64Array,
    last_string: &'a StringArray,
    /// p50, p90, p95, p99.
    quantiles: [&'a Float64Array; 4],
    sketch: &'a BinaryArray,
    partial: &'a BooleanArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Self, crate::error::StorageError> {
        Ok(Self {
            series_id: typed_column(batch, "series_id")?,
            series_key: text_column(batch, "series_key")?,
            measurement: text_column(batch, "measurement")?,
            region: text_column(batch, "region")?,
            field: text_column(batch, "field")?,
            resolution: text_column(batch, "resolution")?,
            window_start: typed_column(batch, "window_start")?,
            window_end: typed_column(batch, "window_end")?,
            kind: text_column(batch, "kind")?,
            count: typed_column(batch, "count")?,
            floats: several(batch, ["sum", "min", "max", "mean", "stddev", "first", "last"])?,
            ints: several(batch, ["int_sum", "int_min", "int_max", "int_first", "int_last"])?,
            first_time: typed_column(batch, "first_time")?,
            last_time: typed_column(batch, "last_time")?,
            true_count: typed_column(batch, "true_count")?,
            false_count: typed_column(batch, "false_count")?,
            last_string: typed_column(batch, "last_string")?,
            quantiles: several(batch, ["p50", "p90", "p95", "p99"])?,
            sketch: typed_column(batch, "sketch")?,
            partial: typed_column(batch, "partial")?,
        })
    }
}

/// The columns `names` of `batch`, all of type `T`.
fn several<'a, T: 'static, const N: usize>(
    batch: &'a RecordBatch,
    names: [&str; N],
) -> Result<[&'a T; N], crate::error::StorageError> {
    let columns = names.iter().map(|name| typed_column(batch, name)).collect::<Result<Vec<&T>, _>>()?;
    // `names` has N entries, so `columns` has too.
    columns.try_into().map_err(|_| crate::error::StorageError::Schema("column count".into()))
}

/// A time in ns since the epoch as PostgreSQL's `timestamptz` (which keeps microseconds).
pub(crate) fn time(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// An exact integer aggregate as PostgreSQL `numeric`, in its binary wire format: digit count,
/// weight of the first base-10000 digit, sign, display scale, then the digits.
#[derive(Debug)]
struct Numeric(i128);

impl ToSql for Numeric {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mut digits = Vec::new(); // least significant first
        let mut rest = self.0.unsigned_abs();
        while rest > 0 {
            digits.push((rest % 10_000) as i16);
            rest /= 10_000;
        }
        let weight = digits.len() as i16 - 1;
        // Trailing zero digits are implied by the weight.
        let zeros = digits.iter().take_while(|&&d| d == 0).count();
        let significant = &digits[zeros..];
        out.put_i16(significant.len() as i16);
        out.put_i16(if digits.is_empty() { 0 } else { weight });
        out.put_u16(if self.0 < 0 { 0x4000 } else { 0 });
        out.put_u16(0);
        for &digit in significant.iter().rev() {
            out.put_i16(digit);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}
