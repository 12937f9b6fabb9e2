//! Checkpoints: the points at which everything the write-ahead log has fed the pipelines is
//! durable downstream, so the log can drop what came before and a restart can begin there.
//!
//! A checkpoint of epoch `k` takes the partitions one after another. For partition `p`:
//! 1. a marker on the log's commit thread sends a [`Barrier`] to `p` alone, between two records
//!    (sequence `s_p`): what `p` received before it is epoch `k`;
//! 2. `p`, reaching the barrier, emits what it closed, hands a copy of its state (open windows,
//!    watermark, detectors, open events) here and goes on; its later output is epoch `k + 1`.
//!    Copying is all the partition's thread does: the copy shares each series with the live state
//!    until the partition changes it. Encoding and writing happen on the checkpointer's thread,
//!    streamed into `state/partition-<p>.<k>` (synced), a megabyte at a time; then the copy is
//!    dropped, and the next partition's barrier is sent.
//!
//! So at most one partition's state is ever held twice: under a load that touches every series
//! within a second, cutting all partitions at one barrier would copy the whole state while the
//! checkpointer encodes it (docs/durability.md). Then:
//! 3. once every partition's file is written, the sinks make epoch `k` durable
//!    ([`Sink::checkpoint`]: Parquet files written, PostgreSQL rows committed or spooled);
//! 4. the manifest `state/checkpoint` is written atomically: `k` and each partition's `s_p` and
//!    file (name, size, hash). From here a restart begins after the smallest `s_p`, and feeds
//!    each partition only the records after its own, so the sinks are told
//!    ([`Sink::committed`]), and the files of earlier checkpoints are deleted;
//! 5. the log deletes the segments before the smallest `s_p`.
//!
//! A crash anywhere in between leaves the previous checkpoint in force: the restart deletes the
//! Parquet files of later epochs and partition files no manifest names, restores the partitions'
//! states and replays the log after their sequences, which recomputes the same output;
//! PostgreSQL upserts make the rows it writes again harmless. So every acknowledged point is
//! counted once. Each partition is cut, written and restored on its own, so a cluster can cut its
//! partitions against a stream's positions in the same way.
//!
//! Manifest format (little-endian): the magic `AUGCKPT4`, epoch u64, partition count u32, per
//! partition its sequence u64 and its file's name (length u32, UTF-8), size u64 and XXH3-64, then
//! the XXH3-64 of everything before. A partition file holds the windows' snapshot
//! ([`crate::snapshot`]) then the predictor's state. Older manifests are still read: format 3
//! (`AUGCKPT3`) has one sequence for all partitions, after the epoch; format 2 (`AUGCKPT2`, Augur
//! before 2026-12) holds the partitions' states inline.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use augur_ingest::wal::group::GroupCommit;
use augur_ingest::{Barrier, Router};
use augur_storage::durable::{write_atomic, FAULT_ENV, TEMP_PREFIX};
use augur_storage::sink::{Epoch, Sink};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tracing::{error, info, warn};
use xxhash_rust::xxh3::xxh3_64;

use crate::pipeline::{PartitionSnapshot, PartitionState};
use crate::snapshot::Writer;

const MAGIC: &[u8; 8] = b"AUGCKPT4";
/// The format before per-partition sequences: one sequence for all.
const MAGIC_ONE_CUT: &[u8; 8] = b"AUGCKPT3";
/// The format before partition files: states inline.
const MAGIC_INLINE: &[u8; 8] = b"AUGCKPT2";
const FILE: &str = "checkpoint";
/// Partition files are named `partition-<i>.<epoch>`.
const PARTITION_PREFIX: &str = "partition-";
/// A failed checkpoint is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// A checkpoint rewrites the whole state of every partition, so it waits until the log has
/// grown by at least 1/`STATE_PER_LOGGED` of the last one's size: checkpoints then write at most
/// that many bytes per byte logged, whatever the state's size, and their cost follows the
/// points rather than the state (docs/durability.md). A small state checkpoints every
/// `wal.checkpoint-interval`. The price of a larger value is a longer replay after a crash.
const STATE_PER_LOGGED: u64 = 1;
/// ... but not less often than every this many intervals while anything is logged, so the log to
/// replay at a restart stays short in time.
const MAX_INTERVALS: u32 = 10;

/// Where one partition's state of a checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionFile {
    /// A file beside the manifest.
    File {
        /// Its name in the state dir.
        name: String,
        /// Its size.
        bytes: u64,
        /// XXH3-64 of its bytes.
        hash: u64,
    },
    /// Inline in a manifest of format 2: the windows' snapshot, then the predictor's state.
    Inline(Vec<u8>),
}

/// One partition's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCut {
    /// The last log record whose effects its state holds.
    pub sequence: u64,
    /// Its state at the barrier.
    pub file: PartitionFile,
}

/// A recorded checkpoint: its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its epoch: output up to it is durable.
    pub epoch: Epoch,
    /// Each partition's cut, in partition order.
    pub partitions: Vec<PartitionCut>,
}

impl Checkpoint {
    /// The last log record every partition's state holds: the log can drop it and what came
    /// before, and a replay begins after it.
    pub fn sequence(&self) -> u64 {
        self.partitions.iter().map(|p| p.sequence).min().unwrap_or(0)
    }

    /// The last log record any partition's state holds: no later record may reuse its number.
    pub fn last_sequence(&self) -> u64 {
        self.partitions.iter().map(|p| p.sequence).max().unwrap_or(0)
    }

    /// The checkpoint in `dir`, or `None` when there is none yet (a new data dir).
    ///
    /// # Errors
    /// When the manifest cannot be read or is damaged.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes).map(Some).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The state of partition `index`, read from its file in `dir` and checked against its hash.
    ///
    /// # Errors
    /// When the file is missing, cut short or damaged.
    pub fn partition_bytes(&self, dir: &Path, index: usize) -> anyhow::Result<Vec<u8>> {
        match &self.partitions[index].file {
            PartitionFile::Inline(bytes) => Ok(bytes.clone()),
            PartitionFile::File { name, bytes, hash } => {
                let path = dir.join(name);
                let read = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                if read.len() as u64 != *bytes || xxh3_64(&read) != *hash {
                    bail!(
                        "{} is damaged: {} bytes where the manifest says {bytes}, or its hash differs",
                        path.display(),
                        read.len()
                    );
                }
                Ok(read)
            }
        }
    }

    /// Writes the manifest as `dir/checkpoint`, atomically and durably; returns the size of the
    /// whole checkpoint (manifest and partition files).
    ///
    /// # Errors
    /// When the file system refuses.
    pub fn write(&self, dir: &Path) -> anyhow::Result<u64> {
        let bytes = self.encode();
        write_atomic(dir, dir, FILE, &bytes)?;
        let files: u64 = self
            .partitions
            .iter()
            .map(|p| if let PartitionFile::File { bytes, .. } = p.file { bytes } else { 0 })
            .sum();
        Ok(bytes.len() as u64 + files)
    }

    /// Deletes the partition files in `dir` that `checkpoint` does not name (all of them when
    /// there is none): those of earlier checkpoints, and of an attempt a crash or an error
    /// interrupted.
    pub fn remove_other_files(checkpoint: Option<&Self>, dir: &Path) {
        let named: Vec<&str> = checkpoint
            .into_iter()
            .flat_map(|c| &c.partitions)
            .filter_map(|p| if let PartitionFile::File { name, .. } = &p.file { Some(name.as_str()) } else { None })
            .collect();
        remove_partition_files(dir, |name| !named.contains(&name));
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 48 * self.partitions.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&(self.partitions.len() as u32).to_le_bytes());
        for partition in &self.partitions {
            out.extend_from_slice(&partition.sequence.to_le_bytes());
            // Only files are written; an inline state (read from format 2) is rewritten as a file
            // by the next checkpoint, which takes every partition's state anew.
            let (name, bytes, hash) = match &partition.file {
                PartitionFile::File { name, bytes, hash } => (name.as_str(), *bytes, *hash),
                PartitionFile::Inline(_) => ("", 0, 0),
            };
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&bytes.to_le_bytes());
            out.extend_from_slice(&hash.to_le_bytes());
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let Some((body, sum)) = bytes.split_last_chunk::<8>() else { bail!("too short to be a checkpoint") };
        let inline = body.starts_with(MAGIC_INLINE);
        // Formats 2 and 3 cut every partition at one sequence, after the epoch.
        let one_cut = inline || body.starts_with(MAGIC_ONE_CUT);
        if !(body.starts_with(MAGIC) || one_cut) || xxh3_64(body) != u64::from_le_bytes(*sum) {
            bail!("not a checkpoint, or damaged (checksum mismatch)");
        }
        let mut rest = &body[MAGIC.len()..];
        let mut take = |n: usize| -> anyhow::Result<&[u8]> {
            let Some((head, tail)) = rest.split_at_checked(n) else { bail!("cut short") };
            rest = tail;
            Ok(head)
        };
        let epoch = u64::from_le_bytes(take(8)?.try_into()?);
        let one_sequence = if one_cut { Some(u64::from_le_bytes(take(8)?.try_into()?)) } else { None };
        let count = u32::from_le_bytes(take(4)?.try_into()?);
        let mut partitions = Vec::with_capacity(count.min(4096) as usize);
        for _ in 0..count {
            let sequence = match one_sequence {
                Some(sequence) => sequence,
                None => u64::from_le_bytes(take(8)?.try_into()?),
            };
            let file = if inline {
                // The windows' snapshot and the predictor's state, each length-prefixed: together
                // they are what a partition file holds.
                let mut state = Vec::new();
                for _ in 0..2 {
                    let len = usize::try_from(u64::from_le_bytes(take(8)?.try_into()?))?;
                    state.extend_from_slice(take(len)?);
                }
                PartitionFile::Inline(state)
            } else {
                let len = u32::from_le_bytes(take(4)?.try_into()?) as usize;
                let name = std::str::from_utf8(take(len)?).context("a partition file name is not UTF-8")?.to_owned();
                if !name.starts_with(PARTITION_PREFIX) || name.contains('/') {
                    bail!("`{name}` is not a partition file name");
                }
                let bytes = u64::from_le_bytes(take(8)?.try_into()?);
                let hash = u64::from_le_bytes(take(8)?.try_into()?);
                PartitionFile::File { name, bytes, hash }
            };
            partitions.push(PartitionCut { sequence, file });
        }
        if !rest.is_empty() {
            bail!("{} bytes after the last partition", rest.len());
        }
        Ok(Self { epoch, partitions })
    }
}

/// Deletes the partition files in `dir` whose name `unwanted` says.
fn remove_partition_files(dir: &Path, unwanted: impl Fn(&str) -> bool) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PARTITION_PREFIX) && unwanted(&name) {
            if let Err(error) = std::fs::remove_file(entry.path()) {
                warn!(%error, file = %name, "Could not delete an old partition state file.");
            }
        }
    }
}

/// Encodes `state` into `dir/partition-<index>.<epoch>`, streamed, synced and renamed into place.
fn write_partition(dir: &Path, index: usize, epoch: Epoch, state: PartitionState) -> anyhow::Result<PartitionFile> {
    let name = format!("{PARTITION_PREFIX}{index}.{epoch}");
    let temp = dir.join(format!("{TEMP_PREFIX}{name}"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
    let mut w = Writer::streaming(Box::new(file.try_clone()?));
    state.encode_into(&mut w);
    let written = w.finish_streaming().and_then(|sizes| file.sync_all().map(|()| sizes));
    drop(file);
    let (bytes, hash) = match written {
        Ok(sizes) => sizes,
        Err(error) => {
            // A full disk must not also fill up with the temporary files of every retry.
            let _ = std::fs::remove_file(&temp);
            return Err(error).with_context(|| format!("writing {}", temp.display()));
        }
    };
    std::fs::rename(&temp, dir.join(&name)).with_context(|| format!("renaming {}", temp.display()))?;
    if epoch >= 2 && std::env::var(FAULT_ENV).is_ok_and(|v| v == "checkpoint-partition-written") {
        std::process::abort(); // crash-test fault injection: see FAULT_ENV
    }
    Ok(PartitionFile::File { name, bytes, hash })
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
        let logged = bytes.saturating_sub(bytes_then);
        let due = if pending.is_some() {
            stopping || last.elapsed() >= RETRY_AFTER
        } else {
            let state_bytes = stats.last_bytes.load(Ordering::Relaxed);
            stopping
                || (grown && last.elapsed() >= parts.interval && logged >= state_bytes / STATE_PER_LOGGED)
                || (grown && last.elapsed() >= parts.interval * MAX_INTERVALS)
                || logged >= parts.log_growth
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

/// Takes the checkpoint of `epoch` and records it. `epoch` moves on even when the attempt fails:
/// partitions that passed its barrier already emit the next epoch, so a retry must not cut them
/// at the same number again (sinks make epochs durable up to a number, so one may be skipped).
fn take_and_record(parts: &Parts, epoch: &mut Epoch) -> Result<u64, Failed> {
    let started = Instant::now();
    let this = *epoch;
    *epoch += 1;
    let checkpoint = take(parts, this)?;
    // From the first barrier to every partition's state written to its file.
    let states_ms = started.elapsed().as_millis() as u64;
    info!(epoch = this, states_ms, "Every partition's state at its barrier is written.");
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

/// Cuts the partitions at barriers of `epoch`, one after another, each partition's state written
/// to its file before the next barrier is sent.
fn take(parts: &Parts, epoch: Epoch) -> Result<Checkpoint, Failed> {
    let fail = |error: anyhow::Error| Failed { checkpoint: None, error };
    // States left by an attempt that failed before all came back.
    while parts.snapshots.try_recv().is_ok() {}
    let count = parts.router.partitions();
    let mut partitions = Vec::with_capacity(count);
    for partition in 0..count {
        let router = parts.router.clone();
        parts
            .log
            .marker(move |sequence| {
                // Only refused once the pipelines are gone; then no state comes back, reported below.
                let _ = router.send_barrier(partition, Barrier { epoch, sequence });
            })
            .map_err(|e| fail(e.into()))?;
        let snapshot = wait_for_state(parts, epoch, partition).map_err(fail)?;
        let sequence = snapshot.barrier.sequence;
        let file = write_partition(&parts.dir, partition, epoch, snapshot.state).map_err(fail)?;
        partitions.push(PartitionCut { sequence, file });
    }
    Ok(Checkpoint { epoch, partitions })
}

/// Waits for `partition`'s state at the barrier of `epoch`.
fn wait_for_state(parts: &Parts, epoch: Epoch, partition: usize) -> anyhow::Result<PartitionSnapshot> {
    let started = Instant::now();
    loop {
        match parts.snapshots.recv_timeout(Duration::from_secs(10)) {
            Ok(snapshot) if snapshot.barrier.epoch == epoch && snapshot.partition == partition => return Ok(snapshot),
            Ok(stale) => warn!(
                epoch = stale.barrier.epoch,
                partition = stale.partition,
                "A partition state of another checkpoint; ignored."
            ),
            Err(RecvTimeoutError::Timeout) => warn!(
                epoch,
                partition,
                seconds = started.elapsed().as_secs(),
                "Still waiting for a partition to reach the checkpoint barrier."
            ),
            Err(RecvTimeoutError::Disconnected) => bail!("the pipelines stopped"),
        }
    }
}

/// Makes the checkpoint's epoch durable in the sinks, records it, and lets the log drop what it
/// covers; returns the checkpoint file's size.
fn record(parts: &Parts, checkpoint: Checkpoint) -> Result<u64, Failed> {
    let started = Instant::now();
    if let Err(error) = parts.sink.checkpoint(checkpoint.epoch) {
        return Err(Failed {
            checkpoint: Some(checkpoint),
            error: anyhow::Error::new(error).context("flushing the sinks"),
        });
    }
    let sinks_ms = started.elapsed().as_millis() as u64;
    let bytes = match checkpoint.write(&parts.dir) {
        Ok(bytes) => bytes,
        Err(error) => return Err(Failed { checkpoint: Some(checkpoint), error }),
    };
    parts.sink.committed(checkpoint.epoch);
    Checkpoint::remove_other_files(Some(&checkpoint), &parts.dir);
    if let Err(error) = parts.log.checkpoint(checkpoint.sequence()) {
        // Recorded all the same: the log just keeps its segments until the next checkpoint.
        warn!(%error, "The log could not drop checkpointed segments; the next checkpoint tries again.");
    }
    let write_ms = started.elapsed().as_millis() as u64 - sinks_ms;
    info!(
        epoch = checkpoint.epoch,
        from_sequence = checkpoint.sequence(),
        to_sequence = checkpoint.last_sequence(),
        bytes,
        sinks_ms,
        write_ms,
        "Checkpoint recorded."
    );
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_damage_is_refused() {
        let cut = |i: usize, sequence: u64, bytes: u64| PartitionCut {
            sequence,
            file: PartitionFile::File { name: format!("partition-{i}.7"), bytes, hash: 99 + bytes },
        };
        let checkpoint = Checkpoint { epoch: 7, partitions: vec![cut(0, 1234, 3), cut(1, 1240, 0), cut(2, 1301, 300)] };
        let bytes = checkpoint.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), checkpoint);
        assert_eq!((checkpoint.sequence(), checkpoint.last_sequence()), (1234, 1301));
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(Checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(Checkpoint::decode(&flipped).is_err());
    }

    #[test]
    fn a_manifest_of_format_2_is_read_with_its_states_inline() {
        // Format 2: the states inline, each partition as windows then predictions, length-prefixed.
        let mut body = MAGIC_INLINE.to_vec();
        body.extend_from_slice(&5u64.to_le_bytes());
        body.extend_from_slice(&77u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for part in [&b"windows"[..], b"detectors"] {
            body.extend_from_slice(&(part.len() as u64).to_le_bytes());
            body.extend_from_slice(part);
        }
        let sum = xxh3_64(&body);
        body.extend_from_slice(&sum.to_le_bytes());
        let checkpoint = Checkpoint::decode(&body).unwrap();
        assert_eq!(checkpoint.epoch, 5);
        assert_eq!(
            checkpoint.partitions,
            vec![PartitionCut { sequence: 77, file: PartitionFile::Inline(b"windowsdetectors".to_vec()) }]
        );
    }

    #[test]
    fn a_manifest_of_format_3_is_read_with_one_sequence_for_every_partition() {
        let mut body = MAGIC_ONE_CUT.to_vec();
        body.extend_from_slice(&4u64.to_le_bytes());
        body.extend_from_slice(&90u64.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        for name in ["partition-0.4", "partition-1.4"] {
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(&10u64.to_le_bytes());
            body.extend_from_slice(&5u64.to_le_bytes());
        }
        let sum = xxh3_64(&body);
        body.extend_from_slice(&sum.to_le_bytes());
        let checkpoint = Checkpoint::decode(&body).unwrap();
        assert_eq!(checkpoint.epoch, 4);
        let cuts: Vec<u64> = checkpoint.partitions.iter().map(|p| p.sequence).collect();
        assert_eq!(cuts, [90, 90]);
        assert_eq!(
            checkpoint.partitions[1].file,
            PartitionFile::File { name: "partition-1.4".into(), bytes: 10, hash: 5 }
        );
    }

    #[test]
    fn a_damaged_partition_file_is_refused_by_its_hash() {
        let dir = std::env::temp_dir().join(format!("augur-checkpoint-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("partition-0.1"), b"state bytes").unwrap();
        let hash = xxh3_64(b"state bytes");
        let good = PartitionFile::File { name: "partition-0.1".into(), bytes: 11, hash };
        let checkpoint = Checkpoint { epoch: 1, partitions: vec![PartitionCut { sequence: 1, file: good }] };
        assert_eq!(checkpoint.partition_bytes(&dir, 0).unwrap(), b"state bytes");
        std::fs::write(dir.join("partition-0.1"), b"state bytez").unwrap();
        let error = checkpoint.partition_bytes(&dir, 0).unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
        std::fs::write(dir.join("partition-0.0"), b"old").unwrap();
        Checkpoint::remove_other_files(Some(&checkpoint), &dir);
        assert!(!dir.join("partition-0.0").exists() && dir.join("partition-0.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
