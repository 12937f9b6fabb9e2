//! Start after any stop, clean or not: the last checkpoint, the write-ahead log after it (a torn
//! tail cut off and reported), and the replay of that log through the pipelines before the
//! listeners open. No manual step, whatever the crash left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use augur_ingest::router::{jump_hash, Rejected};
use augur_ingest::wal::write_record::{self, WriteRecord};
use augur_ingest::wal::{Record, Wal, WalOptions};
use augur_ingest::write::{LinePolicy, ParsedBody};
use augur_ingest::Writer;
use augur_storage::durable::TEMP_PREFIX;
use augur_storage::sink::Epoch;
use tracing::{error, info, warn};

use crate::checkpoint::Checkpoint;
use crate::config::Config;

/// What recovery found and did, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecoveryStats {
    /// Bytes of a torn or corrupt log tail cut off at start.
    pub torn_bytes: AtomicU64,
    /// Log segments dropped after such a tail.
    pub dropped_segments: AtomicU64,
    /// Log records replayed at start.
    pub replayed_records: AtomicU64,
    /// Points those records held, fed to the partitions again.
    pub replayed_points: AtomicU64,
    /// Points of those records that their partition's restored state already held (each
    /// partition is cut at its own place in the log), so not fed again.
    pub restored_points: AtomicU64,
    /// Records that could not be read and were skipped (logged).
    pub skipped_records: AtomicU64,
}

/// The durable state found at start.
#[derive(Debug)]
pub struct Recovered {
    /// The last checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// The log, open, continuing after its last intact record.
    pub wal: Wal,
    /// The records after the checkpoint: to replay.
    pub records: Vec<Record>,
    /// What was found.
    pub stats: RecoveryStats,
}

impl Recovered {
    /// Reads the checkpoint and opens the log under the config's data dir.
    ///
    /// # Errors
    /// When either cannot be read or repaired (a damaged checkpoint file, an unreadable log).
    pub fn open(config: &Config) -> anyhow::Result<Self> {
        let checkpoint = Checkpoint::read(&config.server.state_dir())?;
        remove_temp_files(&config.server.state_dir())?;
        // Partition files of a checkpoint a crash interrupted, or of older ones.
        Checkpoint::remove_other_files(checkpoint.as_ref(), &config.server.state_dir());
        let options = WalOptions {
            dir: config.server.wal_dir(),
            segment_bytes: config.wal.segment_bytes,
            max_bytes: config.wal.max_bytes,
            durability: config.wal.durability,
        };
        let (mut wal, recovery) = Wal::open(options).context("opening the write-ahead log")?;
        let after = checkpoint.as_ref().map_or(0, Checkpoint::sequence);
        // The checkpoint file is written before the log learns of it, so it may be ahead.
        wal.continue_after(after.max(recovery.checkpoint)).context("recording the checkpoint in the log")?;
        let last = checkpoint.as_ref().map_or(0, Checkpoint::last_sequence);
        if last >= wal.next_sequence() {
            // A partition's state holds records the log lost: not synced (`durability = "none"`)
            // or a damaged tail. No new record may reuse their numbers. The records still on disk
            // are replayed from memory below, and the first checkpoint, taken soon after any
            // replay, covers them again.
            wal.continue_after(last).context("recording the checkpoint in the log")?;
        }
        let records: Vec<Record> = recovery.records.into_iter().filter(|r| r.sequence > after).collect();
        let stats = RecoveryStats::default();
        stats.torn_bytes.store(recovery.torn_bytes, Ordering::Relaxed);
        stats.dropped_segments.store(recovery.dropped_segments as u64, Ordering::Relaxed);
        if recovery.torn_bytes > 0 || recovery.dropped_segments > 0 {
            warn!(
                torn_bytes = recovery.torn_bytes,
                dropped_segments = recovery.dropped_segments,
                "The write-ahead log ended in a torn or damaged record (a crash during a write); cut off there. Nothing acknowledged was in it."
            );
        }
        if let Some(c) = &checkpoint {
            info!(
                epoch = c.epoch,
                from_sequence = c.sequence(),
                to_replay = records.len(),
                "Resuming from the last checkpoint."
            );
        }
        Ok(Self { checkpoint, wal, records, stats })
    }

    /// The epoch of the last checkpoint (0: none).
    pub fn committed(&self) -> Epoch {
        self.checkpoint.as_ref().map_or(0, |c| c.epoch)
    }
}

/// Removes what a crash during a checkpoint file's write left in `dir`.
fn remove_temp_files(dir: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Feeds `records` through `writer` (which must have no log: they are in it already), waiting
/// while partitions are full. `cuts` are the last records each partition's restored state holds
/// (by the checkpoint's partition count; empty without one): a partition gets only the points
/// of later records. Blocks; run it off the async runtime.
///
/// # Errors
/// When the partitions close (the pipelines died).
pub fn replay(writer: &Writer, records: Vec<Record>, cuts: &[u64], stats: &RecoveryStats) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let count = records.len();
    info!(records = count, "Replaying the write-ahead log.");
    for record in records {
        let write = match record.kind {
            write_record::KIND => WriteRecord::decode(&record.payload),
            other => {
                error!(sequence = record.sequence, kind = other, "A log record of an unknown kind; skipped.");
                stats.skipped_records.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let write = match write {
            Ok(write) => write,
            Err(e) => {
                // Its checksum held, so this is a record of another version: nothing to recover it with.
                error!(sequence = record.sequence, error = %e, "A log record cannot be decoded; skipped.");
                stats.skipped_records.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        // As it was parsed live: the receive time stamps lines without a timestamp and bounds
        // max-future, and the line limit rejects the same lines.
        let max_line_bytes = usize::try_from(write.max_line_bytes).unwrap_or(usize::MAX);
        let mut parsed = writer.parse(
            &write.body,
            write.precision,
            write.received_at,
            (1, max_line_bytes),
            LinePolicy::Skip(&write.refused),
        );
        if cuts.iter().any(|&cut| record.sequence <= cut) {
            let all = parsed.points;
            drop_restored(&mut parsed, record.sequence, cuts, writer.router().partitions());
            stats.restored_points.fetch_add((all - parsed.points) as u64, Ordering::Relaxed);
        }
        loop {
            match writer.admit(&mut parsed) {
                Ok(()) => break,
                Err(Rejected::Full { .. }) => std::thread::sleep(Duration::from_millis(1)),
                Err(closed @ Rejected::Closed { .. }) => return Err(closed).context("replaying the log"),
            }
        }
        stats.replayed_records.fetch_add(1, Ordering::Relaxed);
        stats.replayed_points.fetch_add(parsed.points as u64, Ordering::Relaxed);
    }
    info!(records = count, points = stats.replayed_points.load(Ordering::Relaxed), "Replay done.");
    Ok(())
}

/// Drops the points of `parsed` (from the record `sequence`) that the restored state of their
/// partition at the checkpoint already holds. Under another partition count a point's partition
/// then is the one the checkpoint's count sent its series to.
fn drop_restored(parsed: &mut ParsedBody, sequence: u64, cuts: &[u64], partitions: usize) {
    if cuts.len() == partitions {
        parsed.batches.retain(|(partition, _)| sequence > cuts[*partition]);
    } else {
        for (_, batch) in &mut parsed.batches {
            batch.retain_series(|series| sequence > cuts[jump_hash(series, cuts.len())]);
        }
        parsed.batches.retain(|(_, batch)| !batch.is_empty());
    }
    parsed.points = parsed.batches.iter().map(|(_, batch)| batch.len()).sum();
    parsed.values = parsed.batches.iter().map(|(_, batch)| batch.value_count()).sum();
}
