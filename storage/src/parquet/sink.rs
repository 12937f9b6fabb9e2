//! `ParquetSink`: buffers batches per folder and epoch, and writes them as files when a buffer is
//! big enough (`file-rows`), old enough (`max-age`), when all buffers together pass
//! `max-buffer-bytes` (the largest go first), at a checkpoint (its epoch and older), and at
//! shutdown.
//!
//! A file holds rows of one epoch, and its name starts with it. At start, files of epochs after
//! the last recorded checkpoint are deleted: the write-ahead log replay writes their rows again,
//! so a crash leaves every row in exactly one file. Compaction leaves such folders alone.
//!
//! Files are encoded and written by whichever pipeline task triggered the flush, outside the lock
//! on the buffers, so partitions do not wait on each other's disk writes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{RecordBatch, StringArray, TimestampNanosecondArray, UInt32Array};
use tracing::{info, warn};

use super::compact::{self, Compacted};
use super::config::ParquetConfig;
use super::file::{self, Encoder, SortOrder};
use super::layout;
use crate::durable::{write_atomic, TEMP_PREFIX};
use crate::error::{Result, StorageError};
use crate::exposition;
use crate::schema::{text_column, typed_column, RawKey};
use crate::sink::{Epoch, Sink, SinkError};

/// Counters of the Parquet sink.
#[derive(Debug, Default)]
pub struct ParquetStats {
    /// Files written.
    pub files: AtomicU64,
    /// Bytes of files written.
    pub bytes: AtomicU64,
    /// Rows written.
    pub rows: AtomicU64,
    /// Of those, raw points (`raw/`): what conservation checks compare with points accepted.
    pub raw_rows: AtomicU64,
    /// Time spent encoding and writing files (ns).
    pub write_nanos: AtomicU64,
    /// Failed file writes (their rows stay buffered and are retried).
    pub errors: AtomicU64,
    /// Temporary files of a crashed run removed at startup.
    pub temp_files_removed: AtomicU64,
    /// Files of epochs after the last checkpoint removed at startup (their rows are replayed).
    pub uncommitted_files_removed: AtomicU64,
    /// Partition folders deleted by retention.
    pub partitions_expired: AtomicU64,
    /// Partition folders compacted in the background.
    pub folders_compacted: AtomicU64,
}

/// Old files wait this long in staging after a compaction swap, for queries that listed them.
pub const COMPACTION_GRACE: Duration = Duration::from_secs(600);

/// How often retention looks for expired partitions.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Buffer {
    order: SortOrder,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    since: Instant,
}

/// A buffer's key: the folder its rows go to and their epoch.
type BufferKey = (PathBuf, Epoch);

#[derive(Debug, Default)]
struct Buffers {
    by_folder: HashMap<BufferKey, Buffer>,
    bytes: usize,
    /// Buffers taken to be written and not yet written or put back, per epoch: a checkpoint
    /// waits for those of its epoch, whichever thread writes them.
    in_flight: HashMap<Epoch, usize>,
}

impl Buffers {
    fn take(&mut self, key: &BufferKey) -> Option<(BufferKey, Buffer)> {
        let (key, buffer) = self.by_folder.remove_entry(key)?;
        self.bytes -= buffer.bytes;
        *self.in_flight.entry(key.1).or_default() += 1;
        Some((key, buffer))
    }

    /// A taken buffer of `epoch` was written or put back.
    fn landed(&mut self, epoch: Epoch) {
        if let Some(n) = self.in_flight.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&epoch);
            }
        }
    }

    /// Takes every buffer whose key `due` accepts.
    fn take_all(&mut self, due: impl Fn(&BufferKey, &Buffer) -> bool) -> Vec<(BufferKey, Buffer)> {
        let keys: Vec<BufferKey> = self.by_folder.iter().filter(|(k, b)| due(k, b)).map(|(k, _)| k.clone()).collect();
        keys.iter().filter_map(|k| self.take(k)).collect()
    }
}

/// Writes raw points and rollups under `<root>/raw` and `<root>/rollups`.
#[derive(Debug)]
pub struct ParquetSink {
    root: PathBuf,
    config: ParquetConfig,
    encoder: Encoder,
    buffers: Mutex<Buffers>,
    /// Signalled whenever a taken buffer is written or put back.
    landed: Condvar,
    stats: ParquetStats,
    last_retention: Mutex<Option<Instant>>,
    /// Where compaction stages merged files and old ones wait out their grace period.
    staging: PathBuf,
    /// Folders being written and being compacted: compaction waits for writes in progress and
    /// keeps new ones out of a folder while it is swapped.
    gate: Mutex<Gate>,
    gate_changed: Condvar,
    /// The background compactor: its stop flag and thread.
    compactor: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    /// The last epoch whose checkpoint is recorded: compaction only merges files up to it.
    committed: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Gate {
    writing: HashMap<PathBuf, usize>,
    compacting: HashSet<PathBuf>,
}

/// Writes into a folder are held back while this lives.
struct FolderClosed<'a> {
    sink: &'a ParquetSink,
    folder: PathBuf,
}

impl Drop for FolderClosed<'_> {
    fn drop(&mut self) {
        let mut gate = self.sink.gate.lock().unwrap_or_else(PoisonError::into_inner);
        gate.compacting.remove(&self.folder);
        self.sink.gate_changed.notify_all();
    }
}

impl ParquetSink {
    /// A sink writing under `root` (usually `<data-dir>/parquet`), after the checkpoint of epoch
    /// `committed`. Removes the temporary files a crash may have left and the files of later
    /// epochs (the replay writes their rows again).
    ///
    /// # Errors
    /// When `root` cannot be created or scanned, or the config is invalid.
    pub fn open(root: PathBuf, config: ParquetConfig, committed: Epoch) -> Result<Self> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(StorageError::Config(problems.join("; ")));
        }
        std::fs::create_dir_all(&root).map_err(|source| StorageError::Io {
            what: "creating",
            path: root.clone(),
            source,
        })?;
        let (removed, uncommitted) = remove_unfinished(&root, committed)?;
        if removed > 0 {
            info!(removed, root = %root.display(), "Removed temporary Parquet files left by a crash.");
        }
        if uncommitted > 0 {
            info!(
                uncommitted,
                committed,
                "Removed Parquet files written after the last checkpoint; the replay writes their rows again."
            );
        }
        let encoder = Encoder::new(config.zstd_level, config.row_group_rows, config.row_group_bytes)?;
        let stats = ParquetStats::default();
        stats.temp_files_removed.store(removed, Ordering::Relaxed);
        stats.uncommitted_files_removed.store(uncommitted, Ordering::Relaxed);
        let staging = root.with_file_name("parquet-staging");
        Ok(Self {
            root,
            config,
            encoder,
            buffers: Mutex::default(),
            landed: Condvar::new(),
            stats,
            last_retention: Mutex::default(),
            staging,
            gate: Mutex::default(),
            gate_changed: Condvar::new(),
            compactor: Mutex::default(),
            committed: Arc::new(AtomicU64::new(committed)),
        })
    }

    /// The root of the tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Counters.
    pub fn stats(&self) -> &ParquetStats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffers> {
        self.buffers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers `batch` for `folder`, then writes whatever the flush policy says is due.
    fn add(&self, key: BufferKey, order: SortOrder, batch: RecordBatch) -> Result<()> {
        let due = {
            let mut buffers = self.lock();
            let bytes = batch.get_array_memory_size();
            buffers.bytes += bytes;
            let buffer = buffers.by_folder.entry(key.clone()).or_insert_with(|| Buffer {
                order,
                batches: Vec::new(),
                rows: 0,
                bytes: 0,
                since: Instant::now(),
            });
            buffer.rows += batch.num_rows();
            buffer.bytes += bytes;
            buffer.batches.push(batch);
            let mut due = Vec::new();
            if buffer.rows >= self.config.file_rows {
                due.extend(buffers.take(&key));
            }
            while buffers.bytes > self.config.max_buffer_bytes {
                let Some(largest) = buffers.by_folder.iter().max_by_key(|(_, b)| b.bytes).map(|(f, _)| f.clone())
                else {
                    break;
                };
                due.extend(buffers.take(&largest));
            }
            due
        };
        // The batch is buffered, so it is taken: a failed write of some buffer is counted, logged
        // and retried later, not reported against this batch (its caller would count it lost).
        let _ = self.write_all(due, false);
        Ok(())
    }

    /// Writes each buffer as one file per schema; failed buffers go back to be retried. A folder
    /// being compacted is waited for when `wait` (a checkpoint must write its epoch), else skipped
    /// (its rows stay buffered for the next tick).
    fn write_all(&self, due: Vec<(BufferKey, Buffer)>, wait: bool) -> Result<()> {
        let mut first_error = None;
        for (key, mut buffer) in due {
            let (folder, epoch) = (&key.0, key.1);
            if !self.begin_write(folder, wait) {
                self.requeue(key, buffer);
                continue;
            }
            let written = self.write(folder, epoch, &buffer);
            self.end_write(folder);
            if written.is_ok() {
                self.lock().landed(epoch);
                self.landed.notify_all();
            }
            if let Err((done, error)) = written {
                // Keep only what was not written (a retry must not add the written rows again),
                // and retry after `max-age` (or at flush), not at every tick.
                let rest = buffer.batches.split_off(done);
                buffer.rows = rest.iter().map(RecordBatch::num_rows).sum();
                buffer.bytes = rest.iter().map(RecordBatch::get_array_memory_size).sum();
                buffer.batches = rest;
                buffer.since = Instant::now();
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(folder = %folder.display(), %error, "Writing a Parquet file failed; its rows stay buffered.");
                self.requeue(key, buffer);
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Puts a buffer that was not written back, in front of anything buffered since.
    fn requeue(&self, key: BufferKey, buffer: Buffer) {
        let mut buffers = self.lock();
        buffers.landed(key.1);
        self.landed.notify_all();
        buffers.bytes += buffer.bytes;
        match buffers.by_folder.get_mut(&key) {
            Some(newer) => {
                let mut batches = buffer.batches;
                batches.append(&mut newer.batches);
                newer.batches = batches;
                newer.rows += buffer.rows;
                newer.bytes += buffer.bytes;
            }
            None => {
                buffers.by_folder.insert(key, buffer);
            }
        }
    }

    /// Writes the buffer as files; on failure, `Err((batches written, error))`.
    fn write(&self, folder: &Path, epoch: Epoch, buffer: &Buffer) -> Result<(), (usize, StorageError)> {
        // Batches of one folder may differ in schema (a new tag, a field's type): one file each.
        let raw = folder.starts_with(self.root.join("raw"));
        let mut start = 0;
        while start < buffer.batches.len() {
            let started = Instant::now();
            let schema = buffer.batches[start].schema();
            let end = (start..buffer.batches.len())
                .find(|&i| buffer.batches[i].schema() != schema)
                .unwrap_or(buffer.batches.len());
            let batches = &buffer.batches[start..end];
            let bytes = self.encoder.encode(batches, buffer.order).map_err(|e| (start, e))?;
            let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
            write_atomic(&self.root, folder, &file::name(epoch, &bytes), &bytes).map_err(|e| (start, e))?;
            self.stats.files.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.stats.rows.fetch_add(rows, Ordering::Relaxed);
            if raw {
                self.stats.raw_rows.fetch_add(rows, Ordering::Relaxed);
            }
            self.stats
                .write_nanos
                .fetch_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
            start = end;
        }
        Ok(())
    }

    /// Whether retention should run now: at most once a minute, and only when configured.
    fn retention_due(&self) -> bool {
        if self.config.raw_retention.is_none() && self.config.rollup_retention.is_none() {
            return false;
        }
        let mut last = self.last_retention.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < RETENTION_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Deletes every partition folder that ended before `now` minus its dataset's retention: raw
    /// `hour=` folders and rollup `date=` folders. Returns how many were deleted.
    ///
    /// # Errors
    /// When the tree cannot be read or a folder cannot be removed.
    pub fn apply_retention(&self, now: i64) -> Result<u64> {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let mut removed = 0;
        for partition in compact::partitions(&self.root)? {
            let keep = match partition.order {
                SortOrder::Raw => self.config.raw_retention,
                SortOrder::Rollups => self.config.rollup_retention,
                SortOrder::Predictions => None,
            };
            let (Some(keep), Some(end)) = (keep, partition.end) else { continue };
            if end <= now.saturating_sub(nanos(keep)) {
                let _closed = self.close_folder(&partition.folder);
                remove_folder(&partition.folder)?;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(removed, "Deleted expired Parquet partitions.");
        }
        self.stats.partitions_expired.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    /// Compacts the folders whose time ended at least `after` before `now` and that hold at least
    /// two files, keeping this sink's own writes out of each folder while it is swapped.
    ///
    /// # Errors
    /// When a folder cannot be compacted; those done before stay done.
    pub fn compact_closed(&self, now: i64, after: Duration) -> Result<Compacted> {
        let after = i64::try_from(after.as_nanos()).unwrap_or(i64::MAX);
        compact::prepare_staging(&self.staging, COMPACTION_GRACE)?;
        let mut done = Compacted::default();
        for partition in compact::partitions(&self.root)? {
            if partition.end.is_none_or(|end| end.saturating_add(after) > now) {
                continue;
            }
            let _closed = self.close_folder(&partition.folder);
            let committed = self.committed.load(Ordering::Acquire);
            match compact::compact_partition(&partition, &self.staging, &self.encoder, 2, committed) {
                Ok(folder) => done.add(folder),
                // One bad folder (a corrupt file) must not stop the others; it is retried next round.
                Err(error) => warn!(folder = %partition.folder.display(), %error, "Compacting a folder failed."),
            }
        }
        if done.folders > 0 {
            info!(
                folders = done.folders,
                before = done.files_before,
                after = done.files_after,
                "Compacted Parquet folders."
            );
        }
        self.stats.folders_compacted.fetch_add(done.folders, Ordering::Relaxed);
        Ok(done)
    }

    /// Keeps writes out of `folder` until the returned guard drops, after waiting for writes in
    /// progress there to finish.
    fn close_folder(&self, folder: &Path) -> FolderClosed<'_> {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        gate.compacting.insert(folder.to_owned());
        while gate.writing.contains_key(folder) {
            gate = self.gate_changed.wait(gate).unwrap_or_else(PoisonError::into_inner);
        }
        FolderClosed { sink: self, folder: folder.to_owned() }
    }

    /// Registers a write into `folder`; `false` while the folder is being compacted, unless
    /// `wait`, which waits for the compaction to finish.
    fn begin_write(&self, folder: &Path, wait: bool) -> bool {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        while gate.compacting.contains(folder) {
            if !wait {
                return false;
            }
            gate = self.gate_changed.wait(gate).unwrap_or_else(PoisonError::into_inner);
        }
        *gate.writing.entry(folder.to_owned()).or_default() += 1;
        true
    }

    fn end_write(&self, folder: &Path) {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = gate.writing.get_mut(folder) {
            *n -= 1;
            if *n == 0 {
                gate.writing.remove(folder);
            }
        }
        self.gate_changed.notify_all();
    }

    /// Compacts closed folders every `every` on a thread of its own until [`Sink::flush`] (at
    /// shutdown) stops it. Folders are closed `after` past their end (late data may still come).
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn start_compactor(self: &Arc<Self>, every: Duration, after: Duration) -> Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let sink = Arc::downgrade(self);
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("augur-compactor".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    let Some(sink) = sink.upgrade() else { return };
                    if let Err(error) = sink.compact_closed(crate::now_nanos(), after) {
                        warn!(%error, "Background compaction failed; it retries at the next round.");
                    }
                }
            })
            .map_err(|source| StorageError::Io {
                what: "starting the compactor for",
                path: self.root.clone(),
                source,
            })?;
        *self.compactor.lock().unwrap_or_else(PoisonError::into_inner) = Some((stop, handle));
        Ok(())
    }

    fn stop_compactor(&self) {
        let compactor = self.compactor.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some((stop, handle)) = compactor {
            stop.store(true, Ordering::Release);
            if handle.join().is_err() {
                warn!("The compactor thread panicked.");
            }
        }
    }

    /// Writes every buffer.
    fn flush_all(&self) -> Result<()> {
        let due = self.lock().take_all(|_, _| true);
        self.write_all(due, true)
    }
}

fn sink_error(error: StorageError) -> SinkError {
    if error.is_retryable() {
        SinkError::Retryable(error.to_string())
    } else {
        SinkError::Fatal(error.to_string())
    }
}

impl Sink for ParquetSink {
    fn raw(&self, epoch: Epoch, key: &RawKey, batch: RecordBatch) -> Result<(), SinkError> {
        let folder = layout::raw_folder(&self.root, &key.measurement, &key.region, key.hour_start);
        let (date, hour) = (layout::date(key.hour_start), layout::hour(key.hour_start).to_string());
        let partitions = [("region", key.region.as_str()), ("date", date.as_str()), ("hour", hour.as_str())];
        let batch = file::without_partition_columns(&batch, &partitions).map_err(sink_error)?;
        self.add((folder, epoch), SortOrder::Raw, batch).map_err(sink_error)
    }

    fn rollups(&self, epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        for (folder, (resolution, region, date), rows) in split_rollups(&self.root, &batch).map_err(sink_error)? {
            let part = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))
                .map_err(|e| sink_error(e.into()))?;
            let partitions =
                [("resolution", resolution.as_str()), ("region", region.as_str()), ("date", date.as_str())];
            let part = file::without_partition_columns(&part, &partitions).map_err(sink_error)?;
            self.add((folder, epoch), SortOrder::Rollups, part).map_err(sink_error)?;
        }
        Ok(())
    }

    fn predictions(&self, epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        let region = typed_column::<StringArray>(&batch, "region").map_err(sink_error)?;
        let start = typed_column::<TimestampNanosecondArray>(&batch, "start").map_err(sink_error)?;
        // Rows grouped by folder: (region, date of the start).
        let mut groups: Vec<((String, String), Vec<u32>)> = Vec::new();
        for row in 0..batch.num_rows() {
            let key = (region.value(row).to_owned(), layout::date(start.value(row)));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, rows)) => rows.push(row as u32),
                None => groups.push((key, vec![row as u32])),
            }
        }
        for ((region, date), rows) in groups {
            let folder = layout::prediction_folder(&self.root, &region, start.value(rows[0] as usize));
            let part = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))
                .map_err(|e| sink_error(e.into()))?;
            let part = file::without_partition_columns(&part, &[("region", region.as_str()), ("date", date.as_str())])
                .map_err(sink_error)?;
            self.add((folder, epoch), SortOrder::Predictions, part).map_err(sink_error)?;
        }
        Ok(())
    }

    fn checkpoint(&self, epoch: Epoch) -> Result<(), SinkError> {
        // Twice: a buffer another thread took may come back after its write failed.
        for _ in 0..2 {
            let due = self.lock().take_all(|key, _| key.1 <= epoch);
            self.write_all(due, true).map_err(sink_error)?;
            // Buffers of these epochs that other threads took (size or age) must land too.
            let mut buffers = self.lock();
            while buffers.in_flight.keys().any(|&e| e <= epoch) {
                buffers = self.landed.wait(buffers).unwrap_or_else(PoisonError::into_inner);
            }
            if !buffers.by_folder.keys().any(|key| key.1 <= epoch) {
                return Ok(());
            }
        }
        Err(SinkError::Retryable(format!("rows of epoch {epoch} could not be written to Parquet; see the log")))
    }

    fn committed(&self, epoch: Epoch) {
        self.committed.fetch_max(epoch, Ordering::AcqRel);
    }

    fn flush(&self) -> Result<(), SinkError> {
        // At shutdown: no compaction may hold a folder closed while the last buffers are written.
        self.stop_compactor();
        self.flush_all().map_err(sink_error)
    }

    fn tick(&self) -> Result<(), SinkError> {
        if self.retention_due() {
            self.apply_retention(crate::now_nanos()).map_err(sink_error)?;
        }
        let due = self.lock().take_all(|_, buffer| buffer.since.elapsed() >= self.config.max_age);
        self.write_all(due, false).map_err(sink_error)
    }

    fn render_metrics(&self, out: &mut String) {
        let s = &self.stats;
        let counters = [
            ("augur_parquet_files_written_total", "Parquet files written.", &s.files),
            ("augur_parquet_bytes_written_total", "Bytes of Parquet files written.", &s.bytes),
            ("augur_parquet_rows_written_total", "Rows written to Parquet.", &s.rows),
            ("augur_parquet_raw_rows_written_total", "Raw points written to Parquet (raw/).", &s.raw_rows),
            ("augur_parquet_write_errors_total", "Failed file writes (rows stay buffered and are retried).", &s.errors),
            (
                "augur_parquet_folders_compacted_total",
                "Partition folders compacted in the background.",
                &s.folders_compacted,
            ),
            (
                "augur_parquet_partitions_expired_total",
                "Partition folders deleted by retention.",
                &s.partitions_expired,
            ),
        ];
        let at_start = [
            (
                "augur_parquet_temp_files_removed",
                "Temporary files of a crashed run removed at start.",
                &s.temp_files_removed,
            ),
            (
                "augur_parquet_uncommitted_files_removed",
                "Files of epochs after the last checkpoint removed at start (the replay writes their rows again).",
                &s.uncommitted_files_removed,
            ),
        ];
        for ((name, help, value), kind) in
            counters.iter().map(|c| (c, "counter")).chain(at_start.iter().map(|g| (g, "gauge")))
        {
            exposition::header(out, name, kind, help);
            exposition::sample(out, name, &[], value.load(Ordering::Relaxed));
        }
        let name = "augur_parquet_write_seconds_total";
        exposition::header(out, name, "counter", "Time spent encoding and writing Parquet files.");
        exposition::sample(out, name, &[], s.write_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let buffers = self.lock();
        let name = "augur_parquet_buffered_bytes";
        exposition::header(out, name, "gauge", "Bytes buffered for Parquet, not yet written.");
        exposition::sample(out, name, &[], buffers.bytes as u64);
        let raw = self.root.join("raw");
        let raw_rows: usize =
            buffers.by_folder.iter().filter(|((folder, _), _)| folder.starts_with(&raw)).map(|(_, b)| b.rows).sum();
        let name = "augur_parquet_buffered_raw_rows";
        exposition::header(out, name, "gauge", "Raw points buffered for Parquet, not yet written.");
        exposition::sample(out, name, &[], raw_rows);
    }
}

type RollupGroup = (PathBuf, (String, String, String), Vec<u32>);

/// Rows of a rollup batch grouped by folder: (resolution, region, date of the window start).
fn split_rollups(root: &Path, batch: &RecordBatch) -> Result<Vec<RollupGroup>> {
    let resolution = text_column(batch, "resolution")?;
    let region = text_column(batch, "region")?;
    let start = typed_column::<TimestampNanosecondArray>(batch, "window_start")?;
    let mut groups: Vec<RollupGroup> = Vec::new();
    for row in 0..batch.num_rows() {
        let date = layout::date(start.value(row));
        let key = (resolution.value(row), region.value(row), date.as_str());
        match groups.iter_mut().find(|(_, (r, g, d), _)| (r.as_str(), g.as_str(), d.as_str()) == key) {
            Some(group) => group.2.push(row as u32),
            None => {
                let folder = layout::rollup_folder(root, key.0, key.1, start.value(row));
                groups.push((folder, (key.0.to_owned(), key.1.to_owned(), date.clone()), vec![row as u32]));
            }
        }
    }
    Ok(groups)
}

/// The folders exactly `depth` levels below `root` (none if `root` does not exist).
pub(super) fn folders_at_depth(root: &Path, depth: usize) -> Result<Vec<PathBuf>> {
    let mut level = vec![root.to_owned()];
    for _ in 0..depth {
        let mut next = Vec::new();
        for dir in &level {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StorageError::Io { what: "reading", path: dir.clone(), source }),
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    Ok(level)
}

/// The value of the partition folder `up` levels above `dir` (0 = `dir` itself) named `key<value>`.
pub(super) fn partition_value(dir: &Path, up: usize, key: &str) -> Option<String> {
    let name = dir.ancestors().nth(up)?.file_name()?.to_str()?;
    name.strip_prefix(key).map(str::to_owned)
}

fn remove_folder(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|source| StorageError::Io { what: "removing", path: dir.to_owned(), source })
}

/// Removes every `.tmp-*` file under `root`, and every Parquet file of an epoch after `committed`;
/// returns how many of each.
fn remove_unfinished(root: &Path, committed: Epoch) -> Result<(u64, u64)> {
    let (mut removed, mut uncommitted) = (0, 0);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| StorageError::Io {
            what: "reading",
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| StorageError::Io { what: "reading", path: dir.clone(), source })?;
            let path = entry.path();
            let kind =
                entry.file_type().map_err(|source| StorageError::Io { what: "reading", path: path.clone(), source })?;
            if kind.is_dir() {
                stack.push(path);
            } else {
                let name = entry.file_name().to_string_lossy().into_owned();
                let counter = if name.starts_with(TEMP_PREFIX) {
                    &mut removed
                } else if name.ends_with(".parquet") && file::epoch_of(&name) > committed {
                    &mut uncommitted
                } else {
                    continue;
                };
                std::fs::remove_file(&path).map_err(|source| StorageError::Io { what: "removing", path, source })?;
                *counter += 1;
            }
        }
    }
    Ok((removed, uncommitted))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Float64Array, StringArray, TimestampNanosecondArray, UInt64Array};
    use arrow_schema::DataType;

    use super::*;
    use crate::schema::raw_schema;

    const HOUR: i64 = 3_600_000_000_000;

    fn raw(time: i64) -> RecordBatch {
        let schema = raw_schema(["host".to_owned()], [("v".to_owned(), DataType::Float64)]);
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![time])),
                Arc::new(UInt64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(Float64Array::from(vec![1.0])),
            ],
        )
        .unwrap()
    }

    fn rows_in(folder: &Path) -> Vec<i64> {
        let mut times = Vec::new();
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let time = batch
                    .column_by_name("time")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<TimestampNanosecondArray>()
                    .unwrap()
                    .clone();
                times.extend(time.values().iter().copied());
            }
        }
        times.sort_unstable();
        times
    }

    #[test]
    fn compaction_while_writing_loses_and_duplicates_nothing() {
        let dir = std::env::temp_dir().join(format!("augur-compact-live-{}", std::process::id()));
        let sink = Arc::new(ParquetSink::open(dir.join("parquet"), ParquetConfig::default(), 0).unwrap());
        sink.committed(1);
        let key = RawKey { measurement: "cpu".into(), region: "eu".into(), hour_start: 0 };
        let folder = layout::raw_folder(sink.root(), "cpu", "eu", 0);
        let writer = {
            let sink = sink.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                for t in 0..60 {
                    sink.raw(1, &key, raw(t)).unwrap();
                    sink.flush_all().unwrap();
                }
            })
        };
        let mut compacted = 0;
        while !writer.is_finished() {
            compacted += sink.compact_closed(HOUR * 2, Duration::ZERO).unwrap().folders;
        }
        writer.join().unwrap();
        sink.flush().unwrap();
        compacted += sink.compact_closed(HOUR * 2, Duration::ZERO).unwrap().folders;
        assert!(compacted > 0);
        assert_eq!(rows_in(&folder), (0..60).collect::<Vec<i64>>(), "every row exactly once");
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1, "one file after the last round");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_of_epochs_after_the_checkpoint_are_left_by_compaction_and_removed_at_open() {
        let root = std::env::temp_dir().join(format!("augur-epochs-{}", std::process::id()));
        let sink = ParquetSink::open(root.clone(), ParquetConfig::default(), 1).unwrap();
        let key = RawKey { measurement: "cpu".into(), region: "eu".into(), hour_start: 0 };
        let folder = layout::raw_folder(sink.root(), "cpu", "eu", 0);
        sink.raw(2, &key, raw(1)).unwrap();
        sink.raw(3, &key, raw(2)).unwrap();
        sink.raw(3, &key, raw(3)).unwrap();
        sink.checkpoint(2).unwrap();
        assert_eq!(rows_in(&folder), vec![1], "a checkpoint writes its epoch and no later one");
        sink.flush().unwrap();
        assert_eq!(rows_in(&folder), vec![1, 2, 3]);
        assert_eq!(sink.compact_closed(HOUR * 2, Duration::ZERO).unwrap().folders, 0, "epoch 3 is not committed");
        drop(sink);

        // A crash after the checkpoint of epoch 2 was recorded: epoch 3's file goes.
        let sink = ParquetSink::open(root.clone(), ParquetConfig::default(), 2).unwrap();
        assert_eq!(rows_in(&folder), vec![1]);
        assert_eq!(sink.stats().uncommitted_files_removed.load(Ordering::Relaxed), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn retention_deletes_whole_expired_hours_only() {
        let root = std::env::temp_dir().join(format!("augur-retention-{}", std::process::id()));
        let config =
            ParquetConfig { raw_retention: Some(std::time::Duration::from_secs(2 * 3600)), ..ParquetConfig::default() };
        let sink = ParquetSink::open(root.clone(), config, 0).unwrap();
        let now = 1_700_000_000 / 3600 * 3600 * 1_000_000_000 + HOUR / 2;
        for hours_ago in [0, 1, 2, 3, 30] {
            let time = now - hours_ago * HOUR;
            let key =
                RawKey { measurement: "cpu".into(), region: "eu".into(), hour_start: time.div_euclid(HOUR) * HOUR };
            sink.raw(1, &key, raw(time)).unwrap();
        }
        sink.flush().unwrap();
        let hours = |root: &Path| folders_at_depth(&root.join("raw"), 4).unwrap().len();
        assert_eq!(hours(&root), 5);
        // Cutoff: now - 2 h. The hour that started 3 h ago ended 2 h ago (expired), the one that
        // started 2 h ago ends 1 h ago (kept).
        assert_eq!(sink.apply_retention(now).unwrap(), 2);
        assert_eq!(hours(&root), 3);
        assert_eq!(sink.apply_retention(now).unwrap(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
