//! One Parquet file: rows sorted, encoded in memory, named by a hash of its bytes, and put in place
//! atomically (temporary name, fsync, rename, fsync of the directory).
//!
//! The name is the XXH3-128 of the file's bytes, so writing the same rows again (a replay after a
//! crash) produces the same name and replaces the file instead of adding a duplicate.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use xxhash_rust::xxh3::xxh3_128;

use super::StorageError;

/// Prefix of files being written; startup removes any left by a crash.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Environment variable for crash tests: `parquet-before-rename` aborts the process after a
/// temporary file is written and synced, before it is renamed into place.
pub const FAULT_ENV: &str = "AUGUR_FAULT";

/// How rows are ordered inside a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Raw points: by `series_id`, then `time`.
    Raw,
    /// Rollups: by `series_key`, `field`, then `window_start`.
    Rollups,
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

/// The column `name` of `batch` as an array of type `T`.
///
/// # Errors
/// [`StorageError::Schema`] when the column is missing or of another type.
pub(super) fn typed_column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, StorageError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| StorageError::Schema(format!("no `{name}` column of type {}", std::any::type_name::<T>())))
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
        SortOrder::Rollups => {
            let key = typed_column::<StringArray>(batch, "series_key")?;
            let field = typed_column::<StringArray>(batch, "field")?;
            let start = typed_column::<TimestampNanosecondArray>(batch, "window_start")?;
            indices.sort_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                (key.value(a), field.value(a), start.value(a)).cmp(&(key.value(b), field.value(b), start.value(b)))
            });
        }
    }
    Ok(arrow_select::take::take_record_batch(batch, &UInt32Array::from(indices))?)
}

/// Writes `bytes` as `<folder>/<hash>.parquet` atomically and durably; returns the path.
///
/// # Errors
/// When the file system refuses (full disk, permissions).
pub fn write_atomic(root: &Path, folder: &Path, bytes: &[u8]) -> Result<PathBuf, StorageError> {
    let name = format!("{:032x}.parquet", xxh3_128(bytes));
    let path = folder.join(&name);
    // Unique per write, so two writers of identical bytes never share (and truncate) a temp file.
    let serial = TEMP_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = folder.join(format!("{TEMP_PREFIX}{}-{serial}-{name}", std::process::id()));
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StorageError::Io { what, path, source }
    };
    fs::create_dir_all(folder).map_err(io("creating", folder))?;
    let mut file = File::create_new(&temp).map_err(io("creating", &temp))?;
    file.write_all(bytes).map_err(io("writing", &temp))?;
    file.sync_all().map_err(io("syncing", &temp))?;
    drop(file);
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == "parquet-before-rename") {
        std::process::abort(); // crash-test fault injection: see FAULT_ENV
    }
    fs::rename(&temp, &path).map_err(io("renaming", &temp))?;
    // The folder records the file; each ancestor up to the root records its child directory, which
    // may be new (created here or by a concurrent writer that has not synced yet). Files are
    // written seldom (per folder, at most every `max-age`), so syncing every level is cheap.
    for dir in folder.ancestors().take_while(|d| d.starts_with(root)) {
        sync_dir(dir)?;
    }
    if let Some(parent) = root.parent() {
        sync_dir(parent)?;
    }
    Ok(path)
}

/// Numbers temporary files, with the process id, so they are unique.
static TEMP_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| StorageError::Io {
        what: "syncing",
        path: dir.to_owned(),
        source,
    })
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
    use super::*;

    #[test]
    fn writing_the_same_bytes_twice_leaves_one_file_and_no_temporary() {
        let root = std::env::temp_dir().join(format!("augur-file-test-{}", std::process::id()));
        let folder = root.join("raw/cpu/region=eu");
        let first = write_atomic(&root, &folder, b"same bytes").unwrap();
        let second = write_atomic(&root, &folder, b"same bytes").unwrap();
        assert_eq!(first, second, "named by content");
        let names: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_ne!(write_atomic(&root, &folder, b"other bytes").unwrap(), first);
        fs::remove_dir_all(&root).unwrap();
    }
}
