//! One Parquet file: rows sorted, encoded in memory, named by its epoch and a hash of its bytes,
//! and put in place atomically (temporary name, fsync, rename, fsync of the directory).
//!
//! The name is `<epoch>-<128-bit hash>.parquet`: the epoch (the checkpoint its rows belong to,
//! see `augur_storage::sink::Epoch`) tells a restart which files a crash left unconfirmed, and the
//! hash of the bytes seeded per file keeps names unique without coordination.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use xxhash_rust::xxh3::xxh3_128_with_seed;

use super::StorageError;
use crate::schema::typed_column;
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

    /// Encodes `batch` (one schema) as a Parquet file in memory.
    ///
    /// # Errors
    /// When Arrow or Parquet refuse the data.
    pub fn encode(&self, batch: &RecordBatch, order: SortOrder) -> Result<Vec<u8>, StorageError> {
        let sorted = sort(batch, order)?;
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, sorted.schema(), Some(self.properties.clone()))?;
        writer.write(&sorted)?;
        writer.close()?;
        Ok(bytes)
    }
}

/// The rows of `batch` in `order`.
fn sort(batch: &RecordBatch, order: SortOrder) -> Result<RecordBatch, StorageError> {
    let mut indices: Vec<u32> = (0..batch.num_rows() as u32).collect();
    match order {
        SortOrder::Raw => {
            let series = typed_column::<UInt64Array>(batch, "series_id")?;
            let time = typed_column::<TimestampNanosecondArray>(batch, "time")?;
            indices.sort_by_key(|&i| (series.value(i as usize), time.value(i as usize)));
        }
        SortOrder::Predictions => {
            let start = typed_column::<TimestampNanosecondArray>(batch, "start")?;
            let id = typed_column::<UInt64Array>(batch, "event_id")?;
            let updated = typed_column::<TimestampNanosecondArray>(batch, "updated")?;
            indices.sort_by_key(|&i| {
                let i = i as usize;
                (start.value(i), id.value(i), updated.value(i))
            });
        }
        SortOrder::Rollups => {
            let key = typed_column::<StringArray>(batch, "series_key")?;
            let field = typed_column::<StringArray>(batch, "field")?;
            let start = typed_column::<TimestampNanosecondArray>(batch, "window_start")?;
            // Kind last: a field that changed type has a row per kind, and a total order makes a
            // file's bytes (and so its name) independent of the order rows were emitted in.
            let kind = typed_column::<StringArray>(batch, "kind")?;
            indices.sort_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                let row = |i: usize| (key.value(i), field.value(i), start.value(i), kind.value(i));
                row(a).cmp(&row(b))
            });
        }
    }
    Ok(arrow_select::take::take_record_batch(batch, &UInt32Array::from(indices))?)
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
                let same = column
                    .as_any()
                    .downcast_ref::<StringArray>()
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
    fn a_name_carries_its_epoch_and_older_names_read_as_epoch_zero() {
        let named = name(12, b"x");
        assert!(named.starts_with("00000012-") && named.ends_with(".parquet"), "{named}");
        assert_eq!(epoch_of(&named), 12);
        assert_eq!(epoch_of("0123456789abcdef0123456789abcdef.parquet"), 0);
        assert_eq!(epoch_of(&name(123_456_789_012, b"x")), 123_456_789_012);
    }
}
