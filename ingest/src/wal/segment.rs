//! Segment files and the record framing inside them.
//!
//! A segment is `<first sequence, 20 digits>.wal`: an 8-byte header (`AUGWAL01`), then records.
//! A record is `length: u32 LE | crc: u32 LE | sequence: u64 LE | kind: u8 | payload`, where
//! `length` counts the bytes after the crc and `crc` is CRC-32 (IEEE) over those bytes. A torn
//! write leaves a record whose length runs past the end or whose crc does not match; scanning
//! stops there.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{Record, WalError};

/// The first bytes of every segment: format name and version.
pub(super) const HEADER: &[u8; 8] = b"AUGWAL01";
/// Bytes of a record before its payload.
pub(super) const RECORD_OVERHEAD: usize = 4 + 4 + 8 + 1;
/// The largest payload a record may carry (the length field's bound, minus the fixed part).
pub(super) const MAX_PAYLOAD: usize = u32::MAX as usize - (8 + 1);

/// The path of the segment whose first record has `sequence`.
pub(super) fn path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{sequence:020}.wal"))
}

/// The segments in `dir` by first sequence, oldest first.
pub(super) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| WalError::io("listing", dir, e))? {
        let entry = entry.map_err(|e| WalError::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(first) = name.to_str().and_then(|n| n.strip_suffix(".wal")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        segments.push((first, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

/// Appends the framing of one record to `out`.
pub(super) fn encode(sequence: u64, kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let body_len = 8 + 1 + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.extend_from_slice(&sequence.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What scanning a segment found.
#[derive(Debug)]
pub(super) struct Scan {
    /// The valid records, in order.
    pub(super) records: Vec<Record>,
    /// Bytes of the valid prefix (header included): where a torn tail starts.
    pub(super) valid_len: u64,
    /// Bytes past the valid prefix.
    pub(super) torn_bytes: u64,
}

/// Reads every valid record of the segment at `path`, stopping at the first torn or corrupt one
/// (or at a record whose sequence does not follow the previous one).
pub(super) fn scan(path: &Path, first: u64) -> Result<Scan, WalError> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| WalError::io("reading", path, e))?;
    if bytes.len() < HEADER.len() || &bytes[..HEADER.len()] != HEADER {
        // A crash while creating the segment: nothing in it was ever acknowledged.
        return Ok(Scan { records: Vec::new(), valid_len: 0, torn_bytes: bytes.len() as u64 });
    }
    let mut records = Vec::new();
    let mut pos = HEADER.len();
    let mut expected = first;
    while let Some(record) = decode(&bytes[pos..], expected) {
        pos += RECORD_OVERHEAD + record.payload.len();
        expected += 1;
        records.push(record);
    }
    Ok(Scan { records, valid_len: pos as u64, torn_bytes: (bytes.len() - pos) as u64 })
}

/// The record at the start of `bytes`, if whole, intact and numbered `expected`.
fn decode(bytes: &[u8], expected: u64) -> Option<Record> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(8..8usize.checked_add(len)?)?;
    if len < 9 || crc32fast::hash(body) != crc {
        return None;
    }
    let sequence = u64::from_le_bytes(body[..8].try_into().ok()?);
    (sequence == expected).then(|| Record { sequence, kind: body[8], payload: body[9..].to_vec() })
}

/// Cuts the segment at `path` to `len` bytes and syncs it; removes it when `len` is 0.
pub(super) fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    if len == 0 {
        return fs::remove_file(path).map_err(|e| WalError::io("removing", path, e));
    }
    let file = OpenOptions::new().write(true).open(path).map_err(|e| WalError::io("opening", path, e))?;
    file.set_len(len).and_then(|()| file.sync_all()).map_err(|e| WalError::io("truncating", path, e))
}

/// Creates the segment starting at `first` with its header, synced, and syncs `dir` so the new
/// name survives a crash. A file of that name can only be left by an earlier failed creation (a
/// full disk), so it is replaced; a failed creation removes what it made, so the next try starts
/// clean.
pub(super) fn create(dir: &Path, first: u64) -> Result<File, WalError> {
    let path = path(dir, first);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io("creating", &path, e))?;
    let written = file.write_all(HEADER).and_then(|()| file.sync_all()).map_err(|e| WalError::io("writing", &path, e));
    if let Err(error) = written.and_then(|()| sync_dir(dir)) {
        let _ = fs::remove_file(&path);
        return Err(error);
    }
    // Appends from here on (truncate cannot be combined with append mode).
    reopen(&path)
}

/// Opens the segment at `path` for appending (recovery has cut it to its valid records). Append
/// mode, so a write undone by truncation leaves no hole.
pub(super) fn reopen(path: &Path) -> Result<File, WalError> {
    OpenOptions::new().append(true).open(path).map_err(|e| WalError::io("opening", path, e))
}

/// Syncs a directory, so entries created or removed in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| WalError::io("syncing", dir, e))
}
