//! Checkpoints: the points at which everything the write-ahead log has fed the pipelines is
//! durable downstream, so the log can drop what came before and a restart can begin there.
//!
//! A checkpoint of epoch `k`:
//! 1. a marker on the log's commit thread sends a [`Barrier`] to every partition, between two
//!    records (sequence `s`): what the partitions received before it is epoch `k`;
//! 2. each partition, reaching the barrier, emits what it closed, encodes its open windows and
//!    watermark, and hands them here; its later output is epoch `k + 1`;
//! 3. once every partition has, the sinks make epoch `k` durable ([`Sink::checkpoint`]: Parquet
//!    files written, PostgreSQL rows committed or spooled);
//! 4. the checkpoint file `state/checkpoint` is written atomically: `k`, `s` and the partitions'
//!    states. From here a restart begins at `s`, so the sinks are told ([`Sink::committed`]);
//! 5. the log deletes the segments before `s`.
//!
//! A crash anywhere in between leaves the previous checkpoint in force: the restart deletes the
//! Parquet files of later epochs, restores the partitions' states and replays the log after its
//! sequence, which recomputes the same output; PostgreSQL upserts make the rows it writes again
//! harmless. So every acknowledged point is counted once.
//!
//! File format (little-endian): the magic `AUGCKPT2`, epoch u64, sequence u64, partition count
//! u32, per partition its windows' state and its predictor's state, each as a length u64 and the
//! bytes ([`crate::snapshot`], `Predictor::encode`), then the XXH3-64 of
//! everything before.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use augur_ingest::wal::group::GroupCommit;
use augur_ingest::{Barrier, Router};
use augur_storage::durable::write_atomic;
use augur_storage::sink::{Epoch, Sink};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{debug, error, warn};
use xxhash_rust::xxh3::xxh3_64;

use crate::pipeline::{PartitionSnapshot, PartitionState};

const MAGIC: &[u8; 8] = b"AUGCKPT2";
const FILE: &str = "checkpoint";
/// A failed checkpoint is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A recorded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its epoch: output up to it is durable.
    pub epoch: Epoch,
    /// The last log record whose effects it holds.
    pub sequence: u64,
    /// Each partition's state at the barrier, in partition order.
    pub partitions: Vec<PartitionState>,
}

impl Checkpoint {
    /// The checkpoint in `dir`, or `None` when there is none yet (a new data dir).
    ///
    /// # Errors
    /// When the file cannot be read or is damaged.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes).map(Some).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes it as `dir/checkpoint`, atomically and durably; returns its size.
    ///
    /// # Errors
    /// When the file system refuses.
    pub fn write(&self, dir: &Path) -> anyhow::Result<u64> {
        let bytes = self.encode();
        write_atomic(dir, dir, FILE, &bytes)?;
        Ok(bytes.len() as u64)
    }

    fn encode(&self) -> Vec<u8> {
        let size = self.partitions.iter().map(|p| p.windows.len() + p.predictions.len() + 16).sum::<usize>();
        let mut out = Vec::with_capacity(32 + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&(self.partitions.len() as u32).to_le_bytes());
        for state in &self.partitions {
            for part in [&state.windows, &state.predictions] {
                out.extend_from_slice(&(part.len() as u64).to_le_bytes());
                out.extend_from_slice(part);
            }
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let Some((body, sum)) = bytes.split_last_chunk::<8>() else { bail!("too short to be a checkpoint") };
        if !body.starts_with(MAGIC) || xxh3_64(body) != u64::from_le_bytes(*sum) {
            bail!("not a checkpoint, or damaged (checksum mismatch)");
        }
        let mut rest = &body[MAGIC.len()..];
        let mut take = |n: usize| -> anyhow::Result<&[u8]> {
            let Some((head, tail)) = rest.split_at_checked(n) else { bail!("cut short") };
            rest = tail;
            Ok(head)
        };
        let epoch = u64::from_le_bytes(take(8)?.try_into()?);
        let sequence = u64::from_le_bytes(take(8)?.try_into()?);
        let count = u32::from_le_bytes(take(4)?.try_into()?);
        let mut partitions = Vec::with_capacity(count.min(4096) as usize);
        for _ in 0..count {
            let mut part = || -> anyhow::Result<Vec<u8>> {
                let len = usize::try_from(u64::from_le_bytes(take(8)?.try_into()?))?;
                Ok(take(len)?.to_vec())
            };
            partitions.push(PartitionState { windows: part()?, predictions: part()? });
        }
        if !rest.is_empty() {
            bail!("{} bytes after the last partition", rest.len());
        }
        Ok(Self { epoch, sequence, partitions })
    }
}

/// Counters of the checkpointer, read by `/metrics`.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints recorded (this run).
    pub completed: AtomicU64,
    /// Attempts that failed (retried).
    pub failed: AtomicU64,
    /// The epoch of the last recorded checkpoint.
    pub epoch: AtomicU64,
    /// How long the last one took, from barrier to recorded (ms).
    pub last_millis: AtomicU64,
    /// Bytes of the last checkpoint file.
    pub last_bytes: AtomicU64,
}

/// What a checkpoint needs.
pub struct Parts {
    /// The log: markers place barriers, checkpoints drop segments.
    pub log: Arc<GroupCommit>,
    /// Barriers go to every partition.
    pub router: Arc<Router>,
    /// Made durable at each checkpoint.
    pub sink: Arc<dyn Sink>,
    /// Where the checkpoint file is.
    pub dir: PathBuf,
    /// Where the partitions hand their states.
    pub snapshots: Receiver<PartitionSnapshot>,
    /// The last recorded epoch (0: none).
    pub committed: Epoch,
    /// Time between checkpoints.
    pub interval: Duration,
    /// A checkpoint is also due once the log has grown this much since the last.
    pub log_growth: u64,
    /// Whether the start replayed records, which the first checkpoint should cover even if no
    /// new ones come.
    pub replayed: bool,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("dir", &self.dir).field("committed", &self.committed).finish_non_exhaustive()
    }
}

/// The checkpointer's thread.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    stats: Arc<CheckpointStats>,
}

impl Checkpointer {
    /// Starts checkpointing on a thread of its own.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn start(parts: Parts) -> std::io::Result<Self> {
        let stats = Arc::new(CheckpointStats::default());
        stats.epoch.store(parts.committed, Ordering::Relaxed);
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new().name("augur-checkpoint".into()).spawn({
            let stats = stats.clone();
            move || run(&parts, &stopped, &stats)
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread), stats })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<CheckpointStats> {
        &self.stats
    }

    /// Takes a last checkpoint (call it once nothing more is appended to the log) and stops.
    ///
    /// # Errors
    /// When that checkpoint failed: the next start replays the log from the one before.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.stop = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the checkpoint thread panicked"),
            None => Ok(()),
        }
    }
}

/// Checkpoints when due until told to stop, then once more.
fn run(parts: &Parts, stopped: &Receiver<()>, stats: &CheckpointStats) -> anyhow::Result<()> {
    let mut epoch = parts.committed + 1;
    let mut last = Instant::now();
    let (mut records_then, mut bytes_then) = log_position(parts);
    // A checkpoint whose barrier passed but which is not recorded yet (its sinks failed).
    let mut pending: Option<Checkpoint> = None;
    loop {
        let stopping = matches!(stopped.recv_timeout(Duration::from_millis(50)), Err(RecvTimeoutError::Disconnected));
        let (records, bytes) = log_position(parts);
        let grown = records != records_then || (parts.replayed && stats.completed.load(Ordering::Relaxed) == 0);
        let due = if pending.is_some() {
            stopping || last.elapsed() >= RETRY_AFTER
        } else {
            stopping
                || (grown && last.elapsed() >= parts.interval)
                || bytes.saturating_sub(bytes_then) >= parts.log_growth
        };
        if due {
            let started = Instant::now();
            let result = match pending.take() {
                // At the stop, the retried checkpoint is not the last: one more covers the rest.
                Some(checkpoint) if stopping => {
                    record(parts, checkpoint).and_then(|_| take_and_record(parts, &mut epoch))
                }
                Some(checkpoint) => record(parts, checkpoint),
                None => take_and_record(parts, &mut epoch),
            };
            last = Instant::now();
            match result {
                Ok(bytes_written) => {
                    (records_then, bytes_then) = (records, parts.log.stats().bytes.load(Ordering::Relaxed));
                    stats.completed.fetch_add(1, Ordering::Relaxed);
                    stats.epoch.store(epoch - 1, Ordering::Relaxed);
                    stats.last_millis.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    stats.last_bytes.store(bytes_written, Ordering::Relaxed);
                }
                Err(Failed { checkpoint, error }) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    if stopping {
                        return Err(error.context("the last checkpoint failed; the next start replays the log"));
                    }
                    error!(
                        error = format!("{error:#}"),
                        "A checkpoint failed; retrying in 1 s. The log keeps its records meanwhile."
                    );
                    pending = checkpoint;
                }
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Takes the checkpoint of `epoch` and records it; `epoch` moves on once the barrier has passed.
fn take_and_record(parts: &Parts, epoch: &mut Epoch) -> Result<u64, Failed> {
    let checkpoint = take(parts, *epoch)?;
    *epoch += 1;
    record(parts, checkpoint)
}

/// The log's record count and size.
fn log_position(parts: &Parts) -> (u64, u64) {
    let stats = parts.log.stats();
    (stats.records.load(Ordering::Relaxed), stats.bytes.load(Ordering::Relaxed))
}

/// Why a checkpoint was not recorded, with its states when the barrier passed (to record later).
struct Failed {
    checkpoint: Option<Checkpoint>,
    error: anyhow::Error,
}

/// Sends the barrier of `epoch` and gathers every partition's state at it.
fn take(parts: &Parts, epoch: Epoch) -> Result<Checkpoint, Failed> {
    let fail = |error: anyhow::Error| Failed { checkpoint: None, error };
    // States left by an attempt whose barrier passed but which failed before all came back.
    while parts.snapshots.try_recv().is_ok() {}
    let router = parts.router.clone();
    parts
        .log
        .marker(move |sequence| {
            // Only refused once the pipelines are gone; then no state comes back, reported below.
            let _ = router.send_barrier(Barrier { epoch, sequence });
        })
        .map_err(|e| fail(e.into()))?;
    let count = parts.router.partitions();
    let mut states: Vec<Option<PartitionState>> = vec![None; count];
    let mut sequence = 0;
    let mut waiting = count;
    let started = Instant::now();
    while waiting > 0 {
        match parts.snapshots.recv_timeout(Duration::from_secs(10)) {
            Ok(snapshot) if snapshot.barrier.epoch == epoch && snapshot.partition < count => {
                sequence = snapshot.barrier.sequence;
                if states[snapshot.partition].replace(snapshot.state).is_none() {
                    waiting -= 1;
                }
            }
            Ok(stale) => warn!(epoch = stale.barrier.epoch, "A partition state of another checkpoint; ignored."),
            Err(RecvTimeoutError::Timeout) => {
                warn!(
                    epoch,
                    waiting,
                    seconds = started.elapsed().as_secs(),
                    "Still waiting for partitions to reach the checkpoint barrier."
                );
            }
            Err(RecvTimeoutError::Disconnected) => return Err(fail(anyhow::anyhow!("the pipelines stopped"))),
        }
    }
    Ok(Checkpoint { epoch, sequence, partitions: states.into_iter().flatten().collect() })
}

/// Makes the checkpoint's epoch durable in the sinks, records it, and lets the log drop what it
/// covers; returns the checkpoint file's size.
fn record(parts: &Parts, checkpoint: Checkpoint) -> Result<u64, Failed> {
    if let Err(error) = parts.sink.checkpoint(checkpoint.epoch) {
        return Err(Failed {
            checkpoint: Some(checkpoint),
            error: anyhow::Error::new(error).context("flushing the sinks"),
        });
    }
    let bytes = match checkpoint.write(&parts.dir) {
        Ok(bytes) => bytes,
        Err(error) => return Err(Failed { checkpoint: Some(checkpoint), error }),
    };
    parts.sink.committed(checkpoint.epoch);
    if let Err(error) = parts.log.checkpoint(checkpoint.sequence) {
        // Recorded all the same: the log just keeps its segments until the next checkpoint.
        warn!(%error, "The log could not drop checkpointed segments; the next checkpoint tries again.");
    }
    debug!(epoch = checkpoint.epoch, sequence = checkpoint.sequence, bytes, "Checkpoint recorded.");
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_damage_is_refused() {
        let state = |w: &[u8], p: &[u8]| PartitionState { windows: w.to_vec(), predictions: p.to_vec() };
        let partitions = vec![state(b"one", b"two"), state(b"", b""), state(&[9; 300], b"x")];
        let checkpoint = Checkpoint { epoch: 7, sequence: 1234, partitions };
        let bytes = checkpoint.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), checkpoint);
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(Checkpoint::decode(&flipped).is_err());
    }
}
