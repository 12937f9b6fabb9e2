//! One Parquet file: rows sorted, encoded in memory, named by its epoch and a hash of its bytes,
//! and put in place atomically (temporary name, fsync, rename, fsync of the directory).
//!
//! The name is `<epoch>-<128-bit hash>.parquet`: the epoch (the checkpoint its rows belong to,
//! see `augur_storage::sink::Epoch`) tells a restart which files a crash left unconfirmed, and the
//! hash of the bytes seeded per file keeps names unique without coordination.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch, TimestampNanosecondArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::interleave::interleave;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::StorageError;
use crate::schema::{text_column, typed_column, Text};
use crate::sink::Epoch;

/// How rows are ordered inside a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Raw points: by `series_id`, then `time`.
    Raw,
    /// Rollups: by `series_key`, `field`, `window_start`, then `kind`.
    Rollups,
    /// Predictions: by `start`, `event_id`, then `updated`.
    Predictions,
}

/// How files are encoded.
#[derive(Debug, Clone)]
pub struct Encoder {
    properties: WriterProperties,
}

impl Encoder {
    /// ZSTD at `zstd_level`, dictionaries for every column but timestamps (delta-encoded), chunk
    /// and page statistics, row groups of at most `row_group_rows` rows and `row_group_bytes`.
    ///
    /// # Errors
    /// When `zstd_level` is not a valid level.
    pub fn new(zstd_level: i32, row_group_rows: usize, row_group_bytes: usize) -> Result<Self, StorageError> {
        let level = ZstdLevel::try_new(zstd_level).map_err(|e| StorageError::Config(e.to_string()))?;
        let mut builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .set_max_row_group_bytes(Some(row_group_bytes.max(1)))
            .set_created_by(format!("augur {}", env!("CARGO_PKG_VERSION")));
        // Timestamps rise within a series: deltas are small and compress far better than a
        // dictionary of mostly distinct values (see docs/performance.md).
        for column in ["time", "window_start", "window_end", "first_time", "last_time"] {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(column), false)
                .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
        }
        Ok(Self { properties: builder.build() })
    }

    /// Encodes `batches` (one schema) as one Parquet file in memory, rows in `order`.
    ///
    /// The rows are never copied whole: their order is computed across the batches, then
    /// written `SLICE_ROWS` (64k) rows at a time, so encoding a file holds its rows once plus one slice
    /// (a concatenated and a sorted copy of a 256 MiB buffer were +0.5 GiB of RSS at every
    /// minute's close, see docs/performance.md).
    ///
    /// # Errors
    /// When there are no batches, they lack a column `order` sorts by, or Arrow or Parquet refuse
    /// the data.
    pub fn encode(&self, batches: &[RecordBatch], order: SortOrder) -> Result<Vec<u8>, StorageError> {
        let first = batches.first().ok_or_else(|| StorageError::Schema("no batches to encode".into()))?;
        let rows = sorted_rows(batches, order)?;
        let schema = plain_schema(&first.schema());
        let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(self.properties.clone()))?;
        for slice in rows.chunks(SLICE_ROWS) {
            writer.write(&plain_slice(batches, &schema, slice)?)?;
        }
        Ok(writer.into_inner()?)
    }
}

/// Rows copied into order at a time while a file is encoded.
const SLICE_ROWS: usize = 64 * 1024;

/// `schema` with dictionary-encoded text as plain utf8: files hold text plain (see
/// `crate::schema`).
fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields = schema.fields().iter().map(|field| match field.data_type() {
        DataType::Dictionary(_, value) => field.as_ref().clone().with_data_type(value.as_ref().clone()),
        _ => field.as_ref().clone(),
    });
    Arc::new(Schema::new_with_metadata(fields.collect::<Vec<Field>>(), schema.metadata().clone()))
}

/// The rows `slice` of `batches` (one schema) in that order, in `schema` (theirs, made plain).
/// Dictionary text is copied out row by row: merging the batches' dictionaries for a slice only
/// to decode it again would be work thrown away.
fn plain_slice(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    slice: &[(usize, usize)],
) -> Result<RecordBatch, StorageError> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (c, field) in schema.fields().iter().enumerate() {
        let arrays: Vec<&ArrayRef> = batches.iter().map(|batch| batch.column(c)).collect();
        if field.data_type() == arrays[0].data_type() {
            let arrays: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            columns.push(interleave(&arrays, slice)?);
            continue;
        }
        let texts = arrays
            .iter()
            .map(|a| Text::of(a).ok_or_else(|| StorageError::Schema(format!("`{}` is not text", field.name()))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut text = StringBuilder::with_capacity(slice.len(), 0);
        for &(b, r) in slice {
            match texts[b].is_null(r) {
                true => text.append_null(),
                false => text.append_value(texts[b].value(r)),
            }
        }
        columns.push(Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The rows of `batches` as (batch, row) pairs in `order`.
fn sorted_rows(batches: &[RecordBatch], order: SortOrder) -> Result<Vec<(usize, usize)>, StorageError> {
    let mut rows: Vec<(usize, usize)> =
        batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r))).collect();
    match order {
        SortOrder::Raw => {
            let series = columns::<UInt64Array>(batches, "series_id")?;
            let time = columns::<TimestampNanosecondArray>(batches, "time")?;
            rows.sort_by_key(|&(b, r)| (series[b].value(r), time[b].value(r)));
        }
        SortOrder::Predictions => {
            let start = columns::<TimestampNanosecondArray>(batches, "start")?;
            let id = columns::<UInt64Array>(batches, "event_id")?;
            let updated = columns::<TimestampNanosecondArray>(batches, "updated")?;
            rows.sort_by_key(|&(b, r)| (start[b].value(r), id[b].value(r), updated[b].value(r)));
        }
        SortOrder::Rollups => {
            let (key, field) = (text_ranks(batches, "series_key")?, text_ranks(batches, "field")?);
            let start = columns::<TimestampNanosecondArray>(batches, "window_start")?;
            // Kind last: a field that changed type has a row per kind, and a total order makes a
            // file's bytes (and so its name) independent of the order rows were emitted in.
            let kind = text_ranks(batches, "kind")?;
            rows.sort_by_key(|&(b, r)| (key[b][r], field[b][r], start[b].value(r), kind[b][r]));
        }
    }
    Ok(rows)
}

/// For the text column `name` of each batch, a rank per row: equal texts rank equal, and ranks
/// follow the texts' order. Dictionary text is compared once per distinct value, not once per
/// row: a rollup's 200-byte series key repeats on each of its fields' rows (with keys compared
/// row by row, a close round of `benches/parquet_write.rs` took 224 ms; by ranks, 184 ms).
fn text_ranks(batches: &[RecordBatch], name: &str) -> Result<Vec<Vec<u32>>, StorageError> {
    let texts = batches.iter().map(|batch| text_column(batch, name)).collect::<Result<Vec<_>, _>>()?;
    let mut distinct: Vec<(&str, usize, usize)> = Vec::new();
    for (b, text) in texts.iter().enumerate() {
        let values = text.values();
        distinct.extend((0..values.len()).map(|v| (values.value(v), b, v)));
    }
    distinct.sort_unstable_by(|x, y| x.0.cmp(y.0));
    let mut value_ranks: Vec<Vec<u32>> = texts.iter().map(|text| vec![0; text.values().len()]).collect();
    let mut rank = 0;
    for (i, &(value, b, v)) in distinct.iter().enumerate() {
        if i > 0 && value != distinct[i - 1].0 {
            rank += 1;
        }
        value_ranks[b][v] = rank;
    }
    let ranks = texts
        .iter()
        .zip(&value_ranks)
        .map(|(text, ranks)| (0..text.len()).map(|r| ranks.get(text.value_index(r)).copied().unwrap_or(0)).collect());
    Ok(ranks.collect())
}

/// Column `name` of every batch, as `T`.
fn columns<'a, T: 'static>(batches: &'a [RecordBatch], name: &str) -> Result<Vec<&'a T>, StorageError> {
    batches.iter().map(|batch| typed_column::<T>(batch, name)).collect()
}

/// A new file name for `bytes` holding rows of `epoch`. Two files with the same bytes get two
/// names: a client that sends a point twice stores it twice, and a rewrite after a crash is
/// handled by epochs, not by names.
pub fn name(epoch: Epoch, bytes: &[u8]) -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    static RUN: OnceLock<u64> = OnceLock::new();
    let run = *RUN.get_or_init(|| u64::from(std::process::id()) << 32 ^ crate::now_nanos() as u64);
    let seed = run.wrapping_add(SERIAL.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    format!("{epoch:08}-{:032x}.parquet", xxh3_128_with_seed(bytes, seed))
}

/// The epoch a file name starts with; 0 for names without one (files written before epochs).
pub fn epoch_of(name: &str) -> Epoch {
    name.split_once('-').and_then(|(epoch, _)| epoch.parse().ok()).unwrap_or(0)
}

/// `batch` without the columns whose values the folder path already holds, and with any other
/// column named like a partition key renamed `<name>::data` (readers add partition keys as
/// columns, so a clash would be ambiguous). `partitions` pairs each key with its value here.
///
/// # Errors
/// Only if Arrow refuses the new batch (a bug).
pub fn without_partition_columns(
    batch: &RecordBatch,
    partitions: &[(&str, &str)],
) -> Result<RecordBatch, StorageError> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match partitions.iter().find(|(key, _)| key == field.name()) {
            Some((key, value)) => {
                let same = Text::of(column)
                    .is_some_and(|text| (0..text.len()).all(|i| text.is_null(i) || text.value(i) == *value));
                if !same {
                    fields.push(field.as_ref().clone().with_name(format!("{key}::data")));
                    columns.push(column.clone());
                }
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::durable::write_atomic;

    #[test]
    fn the_same_bytes_written_twice_are_two_files_and_no_temporary_is_left() {
        let root = std::env::temp_dir().join(format!("augur-file-test-{}", std::process::id()));
        let folder = root.join("raw/cpu/region=eu");
        let first = write_atomic(&root, &folder, &name(3, b"same bytes"), b"same bytes").unwrap();
        let second = write_atomic(&root, &folder, &name(3, b"same bytes"), b"same bytes").unwrap();
        assert_ne!(first, second, "a point sent twice is stored twice");
        let names: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rows_of_several_batches_are_written_in_order_slice_by_slice() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{TimestampNanosecondType, UInt64Type};
        use arrow_schema::DataType;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        // More rows than one slice, in two batches whose rows interleave once sorted.
        let rows = SLICE_ROWS + SLICE_ROWS / 2;
        let schema = crate::schema::raw_schema([], [("v".to_owned(), DataType::Float64)]);
        let batch = |parity: u64| {
            let series: Vec<u64> = (0..rows as u64).rev().map(|i| (i * 2 + parity) % 7).collect();
            let time: Vec<i64> = (0..rows as i64).rev().map(|i| i * 2 + parity as i64).collect();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(TimestampNanosecondArray::from(time)),
                Arc::new(UInt64Array::from(series.clone())),
                Arc::new(arrow_array::Float64Array::from_iter_values(series.iter().map(|&s| s as f64))),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let batches = [batch(0), batch(1)];
        let encoder = Encoder::new(1, 1 << 20, 128 << 20).unwrap();
        let bytes = encoder.encode(&batches, SortOrder::Raw).unwrap();
        let whole = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
        assert_eq!(
            bytes,
            encoder.encode(&[whole], SortOrder::Raw).unwrap(),
            "a file's bytes do not depend on how its rows were batched"
        );

        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let keys: Vec<(u64, i64)> = read
            .iter()
            .flat_map(|b| {
                let series = b.column(1).as_primitive::<UInt64Type>().clone();
                let time = b.column(0).as_primitive::<TimestampNanosecondType>().clone();
                (0..b.num_rows()).map(move |i| (series.value(i), time.value(i)))
            })
            .collect();
        assert_eq!(keys.len(), 2 * rows);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "rows are sorted by series, then time");
    }

    #[test]
    fn rollups_sort_by_text_across_dictionaries_and_files_hold_plain_text() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int32Type;
        use arrow_array::DictionaryArray;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let schema = Arc::new(Schema::new(vec![
            Field::new("series_key", crate::schema::text_dictionary(), false),
            Field::new("field", crate::schema::text_dictionary(), false),
            Field::new("window_start", crate::schema::timestamp_type(), false),
            Field::new("kind", DataType::Utf8, false),
        ]));
        // Two batches with their own dictionaries, keys in another order than the texts'.
        let batch = |keys: &[&str], fields: &[&str], starts: &[i64], kinds: &[&str]| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(keys.iter().copied().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(fields.iter().copied().collect::<DictionaryArray<Int32Type>>()),
                Arc::new(TimestampNanosecondArray::from(starts.to_vec())),
                Arc::new(arrow_array::StringArray::from(kinds.to_vec())),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let batches = [
            batch(&["cpu,host=b", "cpu,host=a", "cpu,host=b"], &["user", "user", "idle"], &[60, 60, 0], &["float"; 3]),
            batch(
                &["cpu,host=a", "cpu,host=c", "cpu,host=a"],
                &["idle", "user", "user"],
                &[0, 0, 0],
                &["float", "float", "integer"],
            ),
        ];
        let rows = sorted_rows(&batches, SortOrder::Rollups).unwrap();
        let text = |b: usize, r: usize, c: usize| Text::of(batches[b].column(c)).unwrap().value(r).to_owned();
        let seen: Vec<(String, String, i64, String)> = rows
            .iter()
            .map(|&(b, r)| {
                (
                    text(b, r, 0),
                    text(b, r, 1),
                    typed_column::<TimestampNanosecondArray>(&batches[b], "window_start").unwrap().value(r),
                    text(b, r, 3),
                )
            })
            .collect();
        let mut expected = seen.clone();
        expected.sort();
        assert_eq!(seen, expected, "rows in text order, whatever the dictionaries' order");

        let bytes = Encoder::new(1, 1 << 20, 128 << 20).unwrap().encode(&batches, SortOrder::Rollups).unwrap();
        let read = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(read.schema().field(0).data_type(), &DataType::Utf8, "files hold plain text");
        let keys: Vec<&str> = read.column(0).as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(keys, expected.iter().map(|row| row.0.as_str()).collect::<Vec<_>>());
    }

    #[test]
    fn a_name_carries_its_epoch_and_older_names_read_as_epoch_zero() {
        let named = name(12, b"x");
        assert!(named.starts_with("00000012-") && named.ends_with(".parquet"), "{named}");
        assert_eq!(epoch_of(&named), 12);
        assert_eq!(epoch_of("0123456789abcdef0123456789abcdef.parquet"), 0);
        assert_eq!(epoch_of(&name(123_456_789_012, b"x")), 123_456_789_012);
    }
}
