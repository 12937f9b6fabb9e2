//! The `Sink` trait every output goes through, and the two sinks that need no storage: one that
//! keeps batches in memory (tests, the demo) and one that drops them (benchmarks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use arrow_array::RecordBatch;

use crate::schema::RawKey;

/// Why a sink could not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (a store is down, a disk is full).
    #[error("{0} (retryable)")]
    Retryable(String),
    /// Retrying the same batch will fail again.
    #[error("{0}")]
    Fatal(String),
}

/// A checkpoint's number. Output belongs to the epoch of the checkpoint that follows it: epoch `k`
/// is everything derived from the write-ahead log between checkpoints `k - 1` and `k`.
pub type Epoch = u64;

/// Where the pipelines hand their output. Called from many pipeline tasks at once, once per batch
/// (never per row).
///
/// Exactly once across crashes: every batch carries its [`Epoch`]. At a checkpoint the engine asks
/// the sink to make epochs up to `k` durable ([`Sink::checkpoint`]), records the checkpoint, then
/// tells the sink ([`Sink::committed`]). After a crash the engine replays the log from the last
/// recorded checkpoint, so a sink must either discard what it took of later epochs (Parquet deletes
/// their files at start) or take it again idempotently (PostgreSQL upserts).
pub trait Sink: Send + Sync {
    /// Takes a batch of raw points of one (measurement, region, hour).
    ///
    /// # Errors
    /// [`SinkError`] when the batch was not taken.
    fn raw(&self, epoch: Epoch, key: &RawKey, batch: RecordBatch) -> Result<(), SinkError>;

    /// Takes a batch of closed windows, in [`crate::schema::rollup_schema`].
    ///
    /// # Errors
    /// [`SinkError`] when the batch was not taken.
    fn rollups(&self, epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError>;

    /// Takes a batch of prediction rows, in [`crate::schema::prediction_schema`] (nothing by
    /// default: a store that keeps no predictions).
    ///
    /// # Errors
    /// [`SinkError`] when the batch was not taken.
    fn predictions(&self, epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        let _ = (epoch, batch);
        Ok(())
    }

    /// Makes everything taken of epochs up to `epoch` durable (blocks until it is).
    ///
    /// # Errors
    /// [`SinkError`] when that failed; the checkpoint is then not recorded and tried again later.
    fn checkpoint(&self, epoch: Epoch) -> Result<(), SinkError> {
        let _ = epoch;
        Ok(())
    }

    /// Epoch `epoch`'s checkpoint is recorded: a replay will never produce its output again.
    fn committed(&self, epoch: Epoch) {
        let _ = epoch;
    }

    /// The engine is stopping: no wait for a store that is down may hold the stop up from here on
    /// (PostgreSQL spools past its bound instead). Called before the last checkpoint.
    fn stopping(&self) {}

    /// Makes everything taken so far durable (called at shutdown).
    ///
    /// # Errors
    /// [`SinkError`] when that failed.
    fn flush(&self) -> Result<(), SinkError>;

    /// Called about once per pipeline tick, for time-based work (writing buffers past their age).
    ///
    /// # Errors
    /// [`SinkError`] when that work failed.
    fn tick(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Appends this sink's counters to `out` in the Prometheus text format (nothing by default).
    fn render_metrics(&self, _out: &mut String) {}

    /// The health of the hot tier's shards (none by default), for the status page.
    fn shards(&self) -> Vec<ShardHealth> {
        Vec::new()
    }
}

/// One hot-tier shard as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShardHealth {
    /// The shard's name.
    pub shard: String,
    /// Whether its circuit breaker is open (the shard is failing; batches go to the spool).
    pub breaker_open: bool,
    /// Batches waiting in its spool.
    pub spool_batches: u64,
    /// Rollup rows committed to it.
    pub rows_written_total: u64,
}

/// Hands every batch to each of several sinks (the demo keeps rollups in memory and writes
/// Parquet).
pub struct FanOut(pub Vec<std::sync::Arc<dyn Sink>>);

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FanOut").field(&self.0.len()).finish()
    }
}

impl Sink for FanOut {
    fn raw(&self, epoch: Epoch, key: &RawKey, batch: RecordBatch) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.raw(epoch, key, batch.clone()))
    }

    fn rollups(&self, epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.rollups(epoch, batch.clone()))
    }

    fn predictions(&self, epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.predictions(epoch, batch.clone()))
    }

    fn checkpoint(&self, epoch: Epoch) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.checkpoint(epoch))
    }

    fn committed(&self, epoch: Epoch) {
        self.0.iter().for_each(|s| s.committed(epoch));
    }

    fn stopping(&self) {
        self.0.iter().for_each(|s| s.stopping());
    }

    /// Flushes every sink, even after one fails (each holds its own data); the first error is
    /// returned.
    fn flush(&self) -> Result<(), SinkError> {
        let mut first = Ok(());
        for sink in &self.0 {
            if let Err(e) = sink.flush() {
                first = first.and(Err(e));
            }
        }
        first
    }

    fn tick(&self) -> Result<(), SinkError> {
        self.0.iter().try_for_each(|s| s.tick())
    }

    fn render_metrics(&self, out: &mut String) {
        self.0.iter().for_each(|s| s.render_metrics(out));
    }

    fn shards(&self) -> Vec<ShardHealth> {
        self.0.iter().flat_map(|s| s.shards()).collect()
    }
}

/// Keeps every batch in memory.
#[derive(Debug, Default)]
pub struct MemorySink {
    raw: Mutex<Vec<(RawKey, RecordBatch)>>,
    rollups: Mutex<Vec<RecordBatch>>,
    predictions: Mutex<Vec<RecordBatch>>,
    flushes: AtomicU64,
}

impl MemorySink {
    /// The raw batches taken so far.
    pub fn raw_batches(&self) -> Vec<(RawKey, RecordBatch)> {
        self.raw.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The rollup batches taken so far.
    pub fn rollup_batches(&self) -> Vec<RecordBatch> {
        self.rollups.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The prediction batches taken so far.
    pub fn prediction_batches(&self) -> Vec<RecordBatch> {
        self.predictions.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How often `flush` was called.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }
}

impl Sink for MemorySink {
    fn raw(&self, _epoch: Epoch, key: &RawKey, batch: RecordBatch) -> Result<(), SinkError> {
        self.raw.lock().unwrap_or_else(PoisonError::into_inner).push((key.clone(), batch));
        Ok(())
    }

    fn rollups(&self, _epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.rollups.lock().unwrap_or_else(PoisonError::into_inner).push(batch);
        Ok(())
    }

    fn predictions(&self, _epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.predictions.lock().unwrap_or_else(PoisonError::into_inner).push(batch);
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Counts rows and drops them.
#[derive(Debug, Default)]
pub struct NullSink {
    /// Raw rows taken.
    pub raw_rows: AtomicU64,
    /// Rollup rows taken.
    pub rollup_rows: AtomicU64,
}

impl Sink for NullSink {
    fn raw(&self, _epoch: Epoch, _key: &RawKey, batch: RecordBatch) -> Result<(), SinkError> {
        self.raw_rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn rollups(&self, _epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.rollup_rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}
