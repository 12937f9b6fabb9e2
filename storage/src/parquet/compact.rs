//! Compaction: the small files of a partition folder (late data, restarts, quiet regions, age-based
//! flushes) merged into as few files as their schemas allow, and swapped in atomically.
//!
//! The merged files are written into a staging folder outside the tree, then the staging folder
//! and the partition folder are exchanged in one `renameat2(RENAME_EXCHANGE)`: a reader that lists
//! the folder sees either all the old files or all the new ones, never both (duplicates) and never
//! neither (a gap). The old files stay in the staging area for `grace` before they are deleted, so
//! a query that listed them just before the swap can still open them.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::{new_null_array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::file::{self, Encoder, SortOrder};
use super::layout;
use super::sink::{folders_at_depth, partition_value};
use crate::durable::{write_atomic, TEMP_PREFIX};
use crate::error::{Result, StorageError};
use crate::sink::Epoch;

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// What a compaction run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Folders rewritten.
    pub folders: u64,
    /// Files in those folders before.
    pub files_before: u64,
    /// Files in those folders after.
    pub files_after: u64,
}

/// A partition folder of the tree, with the end of the time it covers.
#[derive(Debug, Clone)]
pub struct Partition {
    /// The folder.
    pub folder: PathBuf,
    /// How its files are sorted.
    pub order: SortOrder,
    /// End (ns) of the hour (raw) or day (rollups) the folder holds, when its name says.
    pub end: Option<i64>,
}

/// Every partition folder of the tree at `root`.
///
/// # Errors
/// When the tree cannot be read.
pub fn partitions(root: &Path) -> Result<Vec<Partition>> {
    let mut out = Vec::new();
    for folder in folders_at_depth(&root.join("raw"), 4)? {
        let day = partition_value(&folder, 1, "date=").and_then(|d| layout::parse_date(&d));
        let hour = partition_value(&folder, 0, "hour=").and_then(|h| h.parse::<i64>().ok());
        let end = day.zip(hour).map(|(day, hour)| day + (hour + 1) * HOUR);
        out.push(Partition { folder, order: SortOrder::Raw, end });
    }
    for folder in folders_at_depth(&root.join("rollups"), 3)? {
        let end = partition_value(&folder, 0, "date=").and_then(|d| layout::parse_date(&d)).map(|day| day + DAY);
        out.push(Partition { folder, order: SortOrder::Rollups, end });
    }
    Ok(out)
}

/// Compacts every partition folder of the tree at `root` that holds at least `min_files` files,
/// staging under `staging` (same file system, outside the tree). Old files are deleted once they
/// have waited `grace` in staging (this run deletes those of earlier runs).
///
/// Run it only while no server writes to the tree (`augur compact` holds the data dir's lock); the
/// server compacts through `ParquetSink`, which keeps its own writes out of a folder meanwhile.
///
/// # Errors
/// When a file cannot be read or written, or the swap fails; folders done before stay done.
pub fn compact_tree(
    root: &Path,
    staging: &Path,
    encoder: &Encoder,
    min_files: usize,
    grace: Duration,
    committed: Epoch,
) -> Result<Compacted> {
    prepare_staging(staging, grace)?;
    let mut done = Compacted::default();
    for partition in partitions(root)? {
        done.add(compact_partition(&partition, staging, encoder, min_files, committed)?);
    }
    if grace.is_zero() {
        remove_old_staging(staging, Duration::ZERO)?;
    }
    Ok(done)
}

impl Compacted {
    /// Adds one folder's result.
    pub fn add(&mut self, folder: Option<(usize, usize)>) {
        if let Some((before, after)) = folder {
            self.folders += 1;
            self.files_before += before as u64;
            self.files_after += after as u64;
        }
    }
}

/// Creates the staging area and deletes what waited there at least `grace`.
///
/// # Errors
/// When the staging area cannot be created or cleaned.
pub fn prepare_staging(staging: &Path, grace: Duration) -> Result<()> {
    std::fs::create_dir_all(staging).map_err(|source| StorageError::Io {
        what: "creating",
        path: staging.to_owned(),
        source,
    })?;
    remove_old_staging(staging, grace)
}

/// Compacts one folder if it holds at least `min_files` files, all of epochs up to `committed`;
/// `Some((files before, after))`. A file of a later epoch may still be deleted and written again
/// by a replay, so its folder waits.
///
/// # Errors
/// When a file cannot be read or written, or the swap fails.
pub fn compact_partition(
    partition: &Partition,
    staging: &Path,
    encoder: &Encoder,
    min_files: usize,
    committed: Epoch,
) -> Result<Option<(usize, usize)>> {
    let files = parquet_files(&partition.folder)?;
    let epochs: Vec<Epoch> =
        files.iter().map(|f| file::epoch_of(&f.file_name().unwrap_or_default().to_string_lossy())).collect();
    if files.len() < min_files.max(2) || epochs.iter().any(|&e| e > committed) {
        return Ok(None);
    }
    let epoch = epochs.into_iter().max().unwrap_or(0);
    let after = compact_folder(&partition.folder, &files, staging, encoder, (partition.order, epoch))?;
    Ok(Some((files.len(), after)))
}

fn parquet_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(folder).map_err(|source| StorageError::Io {
        what: "reading",
        path: folder.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.ends_with(".parquet") && !name.starts_with(TEMP_PREFIX)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Merges `files` of `folder` and swaps the result in; returns the number of files after.
fn compact_folder(
    folder: &Path,
    files: &[PathBuf],
    staging: &Path,
    encoder: &Encoder,
    (order, epoch): (SortOrder, Epoch),
) -> Result<usize> {
    // Group the files' batches by compatible schema: same type wherever a column name repeats.
    let mut groups: Vec<(Vec<Field>, Vec<RecordBatch>)> = Vec::new();
    for path in files {
        let open =
            File::open(path).map_err(|source| StorageError::Io { what: "opening", path: path.clone(), source })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(open)?.build()?;
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
        let Some(schema) = batches.first().map(RecordBatch::schema) else { continue };
        let group = groups.iter().position(|(fields, _)| compatible(fields, &schema));
        let (fields, members) = match group {
            Some(i) => &mut groups[i],
            None => {
                groups.push((Vec::new(), Vec::new()));
                groups.last_mut().ok_or_else(|| StorageError::Schema("no group".into()))?
            }
        };
        for field in schema.fields() {
            if !fields.iter().any(|f| f.name() == field.name()) {
                fields.push(field.as_ref().clone().with_nullable(true));
            }
        }
        members.extend(batches);
    }
    let unique = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let stage = staging.join(format!("{}-{unique}", std::process::id()));
    for (fields, batches) in &groups {
        let schema: SchemaRef = Arc::new(Schema::new(fields.clone()));
        let aligned: Vec<RecordBatch> = batches.iter().map(|b| align(b, &schema)).collect::<Result<_>>()?;
        let bytes = encoder.encode(&aligned, order)?;
        write_atomic(staging, &stage, &file::name(epoch, &bytes), &bytes)?;
    }
    exchange(folder, &stage)?;
    Ok(groups.len())
}

/// Whether a file with `schema` can join a group with columns `fields` (no name with two types).
fn compatible(fields: &[Field], schema: &Schema) -> bool {
    schema
        .fields()
        .iter()
        .all(|f| fields.iter().find(|g| g.name() == f.name()).is_none_or(|g| g.data_type() == f.data_type()))
}

/// `batch` with the columns of `schema`, in its order, nulls where `batch` lacks one.
fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let by_name: HashMap<&str, &ArrayRef> =
        batch.schema_ref().fields().iter().map(|f| f.name().as_str()).zip(batch.columns()).collect();
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            by_name
                .get(f.name().as_str())
                .map_or_else(|| new_null_array(f.data_type(), batch.num_rows()), |c| (*c).clone())
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Atomically exchanges two directories (Linux `renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> Result<()> {
    let io = |source| StorageError::Io { what: "exchanging", path: a.to_owned(), source };
    let (ca, cb) = (
        CString::new(a.as_os_str().as_bytes()).map_err(|e| io(e.into()))?,
        CString::new(b.as_os_str().as_bytes()).map_err(|e| io(e.into()))?,
    );
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call; the syscall reads
    // them and touches no memory of ours.
    let rc =
        unsafe { libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(io(std::io::Error::last_os_error()));
    }
    for dir in [a.parent(), b.parent()].into_iter().flatten() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Deletes staged (old) folders that have waited at least `grace`.
fn remove_old_staging(staging: &Path, grace: Duration) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(staging) else { return Ok(()) };
    for entry in entries.flatten() {
        let old_enough =
            entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= grace));
        if old_enough {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|source| StorageError::Io { what: "removing", path, source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Float64Array, Int64Array, StringArray, TimestampNanosecondArray, UInt64Array};
    use arrow_schema::DataType;

    use super::*;
    use crate::parquet::{ParquetConfig, ParquetSink};
    use crate::schema::{raw_schema, RawKey};
    use crate::sink::Sink;

    fn batch(series: u64, time: i64, tags: &[&str], field: (&str, DataType)) -> RecordBatch {
        let schema = raw_schema(tags.iter().map(|t| (*t).to_owned()), [(field.0.to_owned(), field.1.clone())]);
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(TimestampNanosecondArray::from(vec![time])), Arc::new(UInt64Array::from(vec![series]))];
        columns.extend(tags.iter().map(|t| Arc::new(StringArray::from(vec![format!("{t}-value")])) as ArrayRef));
        columns.push(match field.1 {
            DataType::Int64 => Arc::new(Int64Array::from(vec![time])),
            _ => Arc::new(Float64Array::from(vec![time as f64])),
        });
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn read_all(folder: &Path) -> Vec<RecordBatch> {
        parquet_files(folder)
            .unwrap()
            .iter()
            .flat_map(|p| ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap()).unwrap().build().unwrap())
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn small_files_merge_by_schema_and_swap_in() {
        let dir = std::env::temp_dir().join(format!("augur-compact-{}", std::process::id()));
        let (root, staging) = (dir.join("parquet"), dir.join("parquet-staging"));
        let sink = ParquetSink::open(root.clone(), ParquetConfig::default(), 0).unwrap();
        let key = RawKey { measurement: "cpu".into(), region: "eu".into(), hour_start: 0 };
        // Five flushes: five files; one adds a tag (schema growth), one has `v` as an integer.
        sink.raw(1, &key, batch(2, 30, &["host"], ("v", DataType::Float64))).unwrap();
        sink.flush().unwrap();
        sink.raw(1, &key, batch(1, 20, &["host"], ("v", DataType::Float64))).unwrap();
        sink.flush().unwrap();
        sink.raw(1, &key, batch(1, 10, &["host", "rack"], ("v", DataType::Float64))).unwrap();
        sink.flush().unwrap();
        sink.raw(1, &key, batch(3, 40, &["host"], ("v", DataType::Int64))).unwrap();
        sink.flush().unwrap();
        sink.raw(1, &key, batch(3, 50, &["host"], ("w", DataType::Float64))).unwrap();
        sink.flush().unwrap();
        let folder = super::super::layout::raw_folder(&root, "cpu", "eu", 0);
        assert_eq!(parquet_files(&folder).unwrap().len(), 5);
        let rows_before: usize = read_all(&folder).iter().map(RecordBatch::num_rows).sum();

        let encoder = Encoder::new(3, 1 << 20, 128 << 20).unwrap();
        let done = compact_tree(&root, &staging, &encoder, 2, Duration::ZERO, 1).unwrap();
        assert_eq!(done, Compacted { folders: 1, files_before: 5, files_after: 2 });
        let after = read_all(&folder);
        assert_eq!(after.iter().map(RecordBatch::num_rows).sum::<usize>(), rows_before);
        // Two files: `v` as a float and `v` as an integer cannot share one. Each is sorted by
        // (series_id, time), has every column of its files, and nulls where a file lacked one.
        for merged in &after {
            let series = merged.column_by_name("series_id").unwrap().as_any().downcast_ref::<UInt64Array>().unwrap();
            let time =
                merged.column_by_name("time").unwrap().as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
            let keys: Vec<(u64, i64)> = (0..merged.num_rows()).map(|i| (series.value(i), time.value(i))).collect();
            assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
            if let Some(rack) = merged.column_by_name("rack") {
                assert_eq!(rack.null_count(), merged.num_rows() - 1, "only the file with `rack` has it");
            }
        }
        let schemas: Vec<_> = after.iter().map(|b| b.schema()).collect();
        assert!(schemas.iter().any(|s| s.field_with_name("v").is_ok_and(|f| f.data_type() == &DataType::Int64)));
        assert!(schemas.iter().any(|s| s.field_with_name("v").is_ok_and(|f| f.data_type() == &DataType::Float64)));
        assert!(std::fs::read_dir(&staging).unwrap().next().is_none(), "old files removed (no grace)");
        // Nothing left to do the second time.
        assert_eq!(compact_tree(&root, &staging, &encoder, 2, Duration::ZERO, 1).unwrap().folders, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
