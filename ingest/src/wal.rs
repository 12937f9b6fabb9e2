//! The write-ahead log: records appended in sequence, made durable in groups (one fsync for
//! many records), recovered after a crash up to the last intact record, and deleted segment by
//! segment once a checkpoint says everything derived from them is durable downstream.
//!
//! [`Wal`] is the log itself, used by one thread; [`group::GroupCommit`] runs it on a thread of
//! its own and lets many requests share each fsync; [`write_record`] is the payload of a logged
//! write request.
//!
//! Files in the WAL directory:
//! - `<first sequence>.wal`: segments, rolled by size: an 8-byte header (`AUGWAL01`), then records
//!   `length u32 | crc32 u32 | sequence u64 | kind u8 | payload` (little-endian; the crc covers
//!   what follows it);
//! - `checkpoint`: the highest sequence whose effects are durable downstream (text), written
//!   atomically; recovery returns only the records after it.

pub mod group;
mod segment;
pub mod write_record;

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a commit makes records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync before a commit returns: an acknowledged record survives power loss and kill -9.
    Fsync,
    /// Written to the OS only: survives kill -9 of Augur, not a crash of the machine. For users
    /// who choose speed over safety.
    None,
}

/// Where and how the log is kept.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// The WAL directory (created if missing).
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// The log may not grow past this many bytes: appends fail with [`WalError::Full`] until a
    /// checkpoint frees segments.
    pub max_bytes: u64,
    /// Whether commits fsync.
    pub durability: Durability,
}

/// One record as appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the log, from 1, without gaps.
    pub sequence: u64,
    /// What the payload is (the log does not interpret it).
    pub kind: u8,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// What [`Wal::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Records after the checkpoint, in sequence order: what must be replayed.
    pub records: Vec<Record>,
    /// Bytes cut off a torn or corrupt tail.
    pub torn_bytes: u64,
    /// Segments removed because they came after a torn or corrupt record.
    pub dropped_segments: usize,
    /// The checkpoint found.
    pub checkpoint: u64,
}

/// Why the log could not do something.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system refused (full disk, read-only, permissions).
    #[error("WAL: {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The log is at `max_bytes`; retry after a checkpoint frees space.
    #[error("WAL full: {bytes} bytes, the limit is {limit}")]
    Full {
        /// Bytes in the log with the refused record.
        bytes: u64,
        /// `max_bytes`.
        limit: u64,
    },
    /// A payload over the record size limit.
    #[error("WAL record of {0} bytes is over the limit of 4 GiB")]
    TooLarge(usize),
    /// An fsync failed: the records of that commit may or may not be on disk (a restart replays
    /// them if they are), and the log takes nothing more until a restart re-reads it.
    #[error("WAL: syncing {} failed: {source}; this write may or may not be stored; restart Augur to recover the log", path.display())]
    SyncFailed {
        /// The segment.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The log stopped after a failed fsync or a write it could not undo (or its thread is gone): what
    /// the disk holds is unknown, so it takes nothing more until a restart re-reads it.
    #[error("WAL stopped after a failed fsync or write; restart Augur to recover the log")]
    Stopped,
}

impl WalError {
    fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { what, path: path.to_owned(), source }
    }

    /// Whether the same append may succeed later without a restart.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Full { .. } | Self::Io { .. })
    }

    /// The same error again, for each of the many requests one failed commit answers.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::Io { what, path, source } => {
                Self::Io { what, path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Self::SyncFailed { path, source } => {
                Self::SyncFailed { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Self::Full { bytes, limit } => Self::Full { bytes: *bytes, limit: *limit },
            Self::TooLarge(n) => Self::TooLarge(*n),
            Self::Stopped => Self::Stopped,
        }
    }
}

/// A closed or open segment.
#[derive(Debug)]
struct SegmentInfo {
    first: u64,
    bytes: u64,
}

/// The log. One owner; see [`group::GroupCommit`] for sharing it.
#[derive(Debug)]
pub struct Wal {
    options: WalOptions,
    /// Every segment on disk, oldest first; the last is the one appended to.
    segments: VecDeque<SegmentInfo>,
    current: File,
    /// Records appended but not yet committed, framed.
    pending: Vec<u8>,
    /// Sequence of the first pending record.
    pending_first: u64,
    next_sequence: u64,
    /// The last sequence a commit made durable.
    committed: u64,
    checkpoint: u64,
    stopped: bool,
}

impl Wal {
    /// Opens the log in `options.dir`, recovering what a previous run left: a torn or corrupt
    /// tail is cut off (and reported), and the records after the checkpoint are returned.
    ///
    /// # Errors
    /// When the directory or its files cannot be read or repaired.
    pub fn open(options: WalOptions) -> Result<(Self, Recovery), WalError> {
        let dir = options.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| WalError::io("creating", &dir, e))?;
        let checkpoint = read_checkpoint(&dir)?;
        let mut recovery = Recovery { checkpoint, ..Recovery::default() };
        let mut segments = VecDeque::new();
        let mut expected: Option<u64> = None;
        let mut damaged = false;
        for (first, path) in segment::list(&dir)? {
            if damaged || expected.is_some_and(|e| e != first) {
                // After a torn record, or not continuing the sequence: nothing here can be trusted
                // to follow what came before.
                damaged = true;
                segment::truncate(&path, 0)?;
                recovery.dropped_segments += 1;
                continue;
            }
            let scan = segment::scan(&path, first)?;
            if scan.torn_bytes > 0 {
                segment::truncate(&path, scan.valid_len)?;
                recovery.torn_bytes += scan.torn_bytes;
                damaged = true;
            }
            if scan.valid_len == 0 {
                continue; // removed: its header never made it to disk
            }
            expected = Some(first + scan.records.len() as u64);
            recovery.records.extend(scan.records.into_iter().filter(|r| r.sequence > checkpoint));
            segments.push_back(SegmentInfo { first, bytes: scan.valid_len });
        }
        if recovery.dropped_segments > 0 || recovery.torn_bytes > 0 {
            segment::sync_dir(&dir)?;
        }
        let next_sequence = expected.unwrap_or(1).max(checkpoint + 1);
        if expected.is_some_and(|e| e < next_sequence) {
            // Every record left precedes the checkpoint (the rest was lost to damage, or never
            // existed): those segments are not needed, and the log restarts after the checkpoint.
            for old in segments.drain(..) {
                segment::truncate(&segment::path(&dir, old.first), 0)?;
            }
            segment::sync_dir(&dir)?;
        }
        let current = match segments.back() {
            Some(last) => segment::reopen(&segment::path(&dir, last.first))?,
            None => {
                let file = segment::create(&dir, next_sequence)?;
                segments.push_back(SegmentInfo { first: next_sequence, bytes: segment::HEADER.len() as u64 });
                file
            }
        };
        let wal = Self {
            options,
            segments,
            current,
            pending: Vec::new(),
            pending_first: next_sequence,
            next_sequence,
            committed: next_sequence - 1,
            checkpoint,
            stopped: false,
        };
        Ok((wal, recovery))
    }

    /// Appends a record (not yet durable: see [`Wal::commit`]) and returns its sequence.
    ///
    /// # Errors
    /// [`WalError::Full`] when it would take the log past `max_bytes`; [`WalError::TooLarge`];
    /// [`WalError::Stopped`] after a failed fsync.
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> Result<u64, WalError> {
        if self.stopped {
            return Err(WalError::Stopped);
        }
        if payload.len() > segment::MAX_PAYLOAD {
            return Err(WalError::TooLarge(payload.len()));
        }
        let bytes = self.bytes() + self.pending.len() as u64 + (segment::RECORD_OVERHEAD + payload.len()) as u64;
        if bytes > self.options.max_bytes {
            return Err(WalError::Full { bytes, limit: self.options.max_bytes });
        }
        let sequence = self.next_sequence;
        if self.pending.is_empty() {
            self.pending_first = sequence;
        }
        segment::encode(sequence, kind, payload, &mut self.pending);
        self.next_sequence += 1;
        Ok(sequence)
    }

    /// Writes the pending records (starting a new segment first if the current one is full) and,
    /// with [`Durability::Fsync`], syncs them. Returns the last committed sequence.
    ///
    /// # Errors
    /// When the write or sync fails. A failed write is undone (its records are dropped and their
    /// sequence numbers reused) and may be retried; a failed fsync stops the log
    /// ([`WalError::Stopped`] from then on).
    pub fn commit(&mut self) -> Result<u64, WalError> {
        if self.stopped {
            return Err(WalError::Stopped);
        }
        if self.pending.is_empty() {
            return Ok(self.next_sequence - 1);
        }
        let result = self.write_pending();
        if let Err(error) = result {
            self.pending.clear();
            self.next_sequence = self.pending_first;
            return Err(error);
        }
        self.pending.clear();
        self.committed = self.next_sequence - 1;
        Ok(self.committed)
    }

    fn write_pending(&mut self) -> Result<(), WalError> {
        let header = segment::HEADER.len() as u64;
        let needs_roll =
            self.segments.back().is_some_and(|s| s.bytes > header && s.bytes >= self.options.segment_bytes);
        if needs_roll {
            // The old segment was synced at its last commit; the new one starts with what is pending.
            self.current = segment::create(&self.options.dir, self.pending_first)?;
            self.segments.push_back(SegmentInfo { first: self.pending_first, bytes: header });
        }
        let Some(last) = self.segments.back_mut() else {
            return Err(WalError::Stopped); // unreachable: open always leaves a current segment
        };
        let path = segment::path(&self.options.dir, last.first);
        if let Err(e) = self.current.write_all(&self.pending) {
            // Undo a partial write so the segment ends at its last whole record; if even that
            // fails, a record appended next would follow a torn one and be lost at recovery.
            if self.current.set_len(last.bytes).is_err() {
                self.stopped = true;
            }
            return Err(WalError::io("writing", &path, e));
        }
        if self.options.durability == Durability::Fsync {
            if let Err(source) = self.current.sync_data() {
                self.stopped = true;
                return Err(WalError::SyncFailed { path, source });
            }
        }
        last.bytes += self.pending.len() as u64;
        Ok(())
    }

    /// Records that everything up to `sequence` (at most the last committed record) is durable
    /// downstream: persists it, and deletes the segments holding only such records (never the one
    /// being appended to).
    ///
    /// # Errors
    /// When the checkpoint file cannot be written or a segment removed.
    pub fn checkpoint(&mut self, sequence: u64) -> Result<(), WalError> {
        let sequence = sequence.min(self.committed);
        if sequence <= self.checkpoint {
            return Ok(());
        }
        write_checkpoint(&self.options.dir, sequence)?;
        self.checkpoint = sequence;
        while self.segments.len() > 1 && self.segments[1].first <= sequence + 1 {
            if let Some(old) = self.segments.pop_front() {
                let path = segment::path(&self.options.dir, old.first);
                fs::remove_file(&path).map_err(|e| WalError::io("removing", &path, e))?;
            }
        }
        segment::sync_dir(&self.options.dir)
    }

    /// Makes `sequence` the checkpoint, also when it lies past the last record on disk: that
    /// happens only when a crash took records that were never synced (`durability = "none"`) or a
    /// damaged tail, after their effects were checkpointed downstream. The log then continues
    /// after `sequence`, so no later record reuses a number the checkpoint already covers.
    ///
    /// # Errors
    /// When the checkpoint or the segments cannot be written or removed.
    pub fn continue_after(&mut self, sequence: u64) -> Result<(), WalError> {
        if sequence < self.next_sequence {
            return self.checkpoint(sequence);
        }
        let dir = self.options.dir.clone();
        write_checkpoint(&dir, sequence)?;
        let first = sequence + 1;
        self.current = segment::create(&dir, first)?;
        for old in std::mem::take(&mut self.segments) {
            let path = segment::path(&dir, old.first);
            fs::remove_file(&path).map_err(|e| WalError::io("removing", &path, e))?;
        }
        self.segments.push_back(SegmentInfo { first, bytes: segment::HEADER.len() as u64 });
        segment::sync_dir(&dir)?;
        (self.checkpoint, self.committed, self.next_sequence, self.pending_first) = (sequence, sequence, first, first);
        self.pending.clear();
        Ok(())
    }

    /// Bytes of the segments on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Segments on disk.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// The sequence the next append gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The last checkpoint.
    pub fn last_checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The last committed sequence (0 when none).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Bytes appended and not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

const CHECKPOINT_FILE: &str = "checkpoint";

fn read_checkpoint(dir: &Path) -> Result<u64, WalError> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            WalError::io(
                "parsing",
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a sequence number"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(WalError::io("reading", &path, e)),
    }
}

fn write_checkpoint(dir: &Path, sequence: u64) -> Result<(), WalError> {
    let path = dir.join(CHECKPOINT_FILE);
    let temp = dir.join(".checkpoint.tmp");
    let mut file = File::create(&temp).map_err(|e| WalError::io("creating", &temp, e))?;
    file.write_all(format!("{sequence}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io("writing", &temp, e))?;
    fs::rename(&temp, &path).map_err(|e| WalError::io("renaming", &temp, e))?;
    segment::sync_dir(dir)
}

#[cfg(test)]
mod tests;
