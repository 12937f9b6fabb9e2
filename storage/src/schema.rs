//! The Arrow schemas of Augur's outputs. Each output kind has one schema; column meanings are the
//! contract with the stores and with analysts reading the files.
//!
//! ## Rollups ([`rollup_schema`])
//! One row per (series, field, resolution, window). Windows are tumbling, aligned to the Unix
//! epoch in UTC, `[window_start, window_end)`.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `series_id` | u64 | XXH3-64 of `series_key` |
//! | `series_key` | utf8 | canonical `measurement,tag=value,...` |
//! | `measurement`, `region`, `field` | utf8 | |
//! | `resolution` | utf8 | `10s`, `1m`, `1h`, ... |
//! | `window_start`, `window_end` | timestamp ns (UTC, no zone in the type) | |
//! | `kind` | utf8 | `float`, `integer`, `unsigned`, `boolean`, `string` |
//! | `count` | u64 | values in the window |
//! | `sum`, `min`, `max`, `mean`, `stddev`, `first`, `last` | f64, null unless numeric | `stddev` is the population standard deviation; `first`/`last` by event time |
//! | `int_sum`, `int_min`, `int_max`, `int_first`, `int_last` | decimal(38,0), null unless integer or unsigned | exact |
//! | `first_time`, `last_time` | timestamp ns (UTC) | event times of the first and last value |
//! | `true_count`, `false_count` | u64, null unless boolean | |
//! | `last_string` | utf8, null unless string | |
//! | `p50`, `p90`, `p95`, `p99` | f64, null unless numeric | within 1 % of the exact quantile |
//! | `sketch` | binary, null unless numeric | `DdSketch::to_bytes`, mergeable across windows and shards |
//! | `partial` | bool | emitted at shutdown before the watermark closed the window |
//!
//! In memory the text columns that repeat from row to row (`series_key`, `measurement`, `region`,
//! `field`, `resolution`, `kind`) are dictionary-encoded ([`text_dictionary`]): a series' key is
//! about 200 bytes and was copied onto each of its fields' rows at every close (a fifth of a
//! minute's close in memory, see docs/performance.md). Readers take them with [`text_column`];
//! files hold them as plain utf8, as the table says.
//!
//! ## Raw points ([`raw_schema`])
//! One batch per (measurement, region, UTC hour), see [`RawKey`]: a `time` column (timestamp ns,
//! UTC), `series_id` (u64), one nullable utf8 column per tag key, then one nullable column per
//! field, typed f64, i64, u64, bool or utf8. Columns are named by their key; when a name is taken
//! (a tag and a field of one name, a field that arrives with a second type, a key named `series_id`)
//! the later column is named `<key>::tag` or `<key>::<type>`. Schemas of different batches of one
//! measurement may differ: readers union them by name.
//!
//! ## Predictions ([`prediction_schema`])
//! One row per change of an event: when it opens (`state = open`, no `end`), when its forecast
//! changes (exhaustion events), and when it closes (`state = closed`), all with the same
//! `event_id`; readers keep the latest row per event.
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `event_id` | u64 | XXH3-64 of (series id, start, kind, field) |
//! | `kind` | utf8 | `anomaly`, `exhaustion`, or `risk` (a host's risk change: one event per host, `peak_score` the risk) |
//! | `series_id`, `series_key`, `measurement`, `region`, `field` | | as in rollups |
//! | `entity` | utf8, nullable | the value of the entity tag (`host` by default) |
//! | `start`, `end` | timestamp ns (UTC); `end` null while open | event time of the first score over the threshold; of the point that closed it |
//! | `peak_time`, `peak_score`, `peak_value` | timestamp ns, f64, f64 | the highest score so far, when, and the value then |
//! | `state` | utf8 | `open` or `closed` |
//! | `change` | utf8 | what this row says: `opened`, `updated` (a new forecast) or `closed` |
//! | `updated` | timestamp ns | event time of the change: the newest row of an event has the largest |
//! | `forecast` | timestamp ns, nullable | exhaustion events: when the field is forecast to reach its limit; `peak_score` is then the forecast's confidence |

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayAccessor, ArrayRef, RecordBatch, StringArray, TypedDictionaryArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Precision and scale of the exact integer aggregates.
pub const INT_DECIMAL: DataType = DataType::Decimal128(38, 0);

/// Nanosecond timestamps, as every time column is typed. Values are UTC; the type carries no time
/// zone because DuckDB (2.0) cannot truncate, bucket or cast `TIMESTAMPTZ_NS`, while plain
/// `TIMESTAMP_NS` works with every date function there, in Polars and in pyarrow.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

/// The type of a dictionary-encoded text column: `i32` keys into utf8 values.
pub fn text_dictionary() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The schema of rollup batches (in memory; see the module docs for the files).
pub fn rollup_schema() -> SchemaRef {
    let f64_col = |name: &str| Field::new(name, DataType::Float64, true);
    let dec_col = |name: &str| Field::new(name, INT_DECIMAL, true);
    let repeated = |name: &str| Field::new(name, text_dictionary(), false);
    let mut fields = vec![
        Field::new("series_id", DataType::UInt64, false),
        repeated("series_key"),
        repeated("measurement"),
        repeated("region"),
        repeated("field"),
        repeated("resolution"),
        Field::new("window_start", timestamp_type(), false),
        Field::new("window_end", timestamp_type(), false),
        repeated("kind"),
        Field::new("count", DataType::UInt64, false),
    ];
    fields.extend(["sum", "min", "max", "mean", "stddev", "first", "last"].map(f64_col));
    fields.extend(["int_sum", "int_min", "int_max", "int_first", "int_last"].map(dec_col));
    fields.extend([
        Field::new("first_time", timestamp_type(), false),
        Field::new("last_time", timestamp_type(), false),
        Field::new("true_count", DataType::UInt64, true),
        Field::new("false_count", DataType::UInt64, true),
        Field::new("last_string", DataType::Utf8, true),
    ]);
    fields.extend(["p50", "p90", "p95", "p99"].map(f64_col));
    fields.extend([Field::new("sketch", DataType::Binary, true), Field::new("partial", DataType::Boolean, false)]);
    Arc::new(Schema::new(fields))
}

/// Where a batch of raw points belongs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawKey {
    /// The measurement of every point in the batch.
    pub measurement: String,
    /// The region of every point in the batch.
    pub region: String,
    /// Start of the UTC hour all the points' times fall in, in ns since the epoch.
    pub hour_start: i64,
}

/// The schema of prediction batches.
pub fn prediction_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::UInt64, false),
        text("kind"),
        Field::new("series_id", DataType::UInt64, false),
        text("series_key"),
        text("measurement"),
        text("region"),
        Field::new("entity", DataType::Utf8, true),
        text("field"),
        Field::new("start", timestamp_type(), false),
        Field::new("end", timestamp_type(), true),
        Field::new("peak_time", timestamp_type(), false),
        Field::new("peak_score", DataType::Float64, false),
        Field::new("peak_value", DataType::Float64, false),
        text("state"),
        Field::new("forecast", timestamp_type(), true),
        text("change"),
        Field::new("updated", timestamp_type(), false),
    ]))
}

/// The fixed leading columns of a raw batch; tag and field columns follow.
pub fn raw_schema(
    tags: impl IntoIterator<Item = String>,
    fields: impl IntoIterator<Item = (String, DataType)>,
) -> SchemaRef {
    let mut columns =
        vec![Field::new("time", timestamp_type(), false), Field::new("series_id", DataType::UInt64, false)];
    columns.extend(tags.into_iter().map(|name| Field::new(name, DataType::Utf8, true)));
    columns.extend(fields.into_iter().map(|(name, data_type)| Field::new(name, data_type, true)));
    Arc::new(Schema::new(columns))
}

/// The column `name` of `batch` as an array of type `T`.
///
/// # Errors
/// [`crate::error::StorageError::Schema`] when the column is missing or of another type.
pub fn typed_column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, crate::error::StorageError> {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).ok_or_else(|| {
        crate::error::StorageError::Schema(format!("no `{name}` column of type {}", std::any::type_name::<T>()))
    })
}

/// A text column, plain or dictionary-encoded, read row by row.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    /// Plain utf8.
    Plain(&'a StringArray),
    /// `i32` keys into utf8 values.
    Dictionary(TypedDictionaryArray<'a, Int32Type, StringArray>),
}

impl<'a> Text<'a> {
    /// The text of `row` ("" when null).
    pub fn value(&self, row: usize) -> &'a str {
        match self {
            Self::Plain(array) => array.value(row),
            Self::Dictionary(array) => array.value(row),
        }
    }

    /// Whether `row` is null.
    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Self::Plain(array) => array.is_null(row),
            Self::Dictionary(array) => array.is_null(row),
        }
    }

    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Plain(array) => array.len(),
            Self::Dictionary(array) => array.len(),
        }
    }

    /// The distinct texts a row can point at: the dictionary's values, or every row of a plain
    /// column.
    pub fn values(&self) -> &'a StringArray {
        match self {
            Self::Plain(array) => array,
            Self::Dictionary(array) => array.values(),
        }
    }

    /// Where in [`Text::values`] the text of `row` is.
    pub fn value_index(&self, row: usize) -> usize {
        match self {
            Self::Plain(_) => row,
            Self::Dictionary(array) => array.keys().values()[row] as usize,
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `column` as text, if it is text.
    pub fn of(column: &'a ArrayRef) -> Option<Self> {
        match column.data_type() {
            DataType::Utf8 => column.as_string_opt::<i32>().map(Self::Plain),
            DataType::Dictionary(key, value) if **key == DataType::Int32 && **value == DataType::Utf8 => {
                column.as_dictionary_opt::<Int32Type>()?.downcast_dict::<StringArray>().map(Self::Dictionary)
            }
            _ => None,
        }
    }
}

/// The text column `name` of `batch`, plain or dictionary-encoded.
///
/// # Errors
/// [`crate::error::StorageError::Schema`] when the column is missing or not text.
pub fn text_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<Text<'a>, crate::error::StorageError> {
    batch
        .column_by_name(name)
        .and_then(Text::of)
        .ok_or_else(|| crate::error::StorageError::Schema(format!("no text column `{name}`")))
}
