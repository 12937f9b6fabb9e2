//! A partition's state as bytes: its open windows and its watermark, so a checkpoint can hold
//! them and the write-ahead log need not be kept back to the start of the oldest open window.
//!
//! Format (all integers little-endian; lengths and counts as LEB128 varints): the magic
//! `AUGSNAP1`, the resolutions in ns (a snapshot only restores under the same resolutions), the
//! watermark, the series (id, canonical key, measurement, region), then per resolution its open
//! windows: start, and per series its field aggregates (name, kind, count, first and last times,
//! the values; sketches in their own byte format, `DdSketch::to_bytes`).
//!
//! This module holds the byte-level reader and writer; each type encodes itself beside its
//! definition (`Windows` in `window.rs`, `Aggregate` in `aggregate.rs`, `Watermark` in
//! `watermark.rs`). A checkpoint streams a partition's snapshot straight into its file
//! ([`Writer::streaming`]), a megabyte at a time.

use xxhash_rust::xxh3::Xxh3Default;

use crate::watermark::Watermark;
use crate::window::{Resolution, Windows};

const MAGIC: &[u8; 8] = b"AUGSNAP1";

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot, or cut short, or damaged: the offset where reading failed.
    #[error("snapshot damaged or cut short at byte {0}")]
    Corrupt(usize),
    /// Taken under other window resolutions than the ones configured now.
    #[error("snapshot taken with resolutions {taken:?} ns, configured now {now:?} ns")]
    Resolutions {
        /// In the snapshot.
        taken: Vec<i64>,
        /// In the config.
        now: Vec<i64>,
    },
}

/// Encodes a partition's `windows` and `watermark`.
pub fn encode(windows: &Windows, watermark: &Watermark) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 << 16), None);
    encode_into(windows.clone(), watermark, &mut w);
    w.0
}

/// Writes a partition's `windows` (a copy, released as it is written) and `watermark` into `w`
/// (which may stream to a file).
pub fn encode_into(windows: Windows, watermark: &Watermark, w: &mut Writer) {
    w.0.extend_from_slice(MAGIC);
    let resolutions = windows.resolutions();
    w.varint(resolutions.len() as u64);
    for resolution in resolutions {
        w.i64(resolution.nanos);
    }
    watermark.encode(w);
    windows.encode(w);
}

/// Decodes what [`encode`] wrote, for windows at `resolutions` and a watermark with these
/// settings (ns).
///
/// # Errors
/// [`SnapshotError`] when the bytes are not a whole snapshot or the resolutions differ.
pub fn decode(
    bytes: &[u8],
    resolutions: Vec<Resolution>,
    settings: (i64, i64),
) -> Result<(Windows, Watermark), SnapshotError> {
    let mut r = Reader { bytes, pos: 0 };
    let decoded = decode_from(&mut r, resolutions, settings)?;
    r.finish()?;
    Ok(decoded)
}

/// Reads what [`encode_into`] wrote from `r`, leaving it after the snapshot.
///
/// # Errors
/// As [`decode`].
pub fn decode_from(
    r: &mut Reader<'_>,
    resolutions: Vec<Resolution>,
    (allowed_lateness, idle_timeout): (i64, i64),
) -> Result<(Windows, Watermark), SnapshotError> {
    if r.take(MAGIC.len())? != MAGIC {
        return Err(r.corrupt());
    }
    let taken = (0..r.count()?).map(|_| r.i64()).collect::<Result<Vec<_>, _>>()?;
    let now: Vec<i64> = resolutions.iter().map(|r| r.nanos).collect();
    if taken != now {
        return Err(SnapshotError::Resolutions { taken, now });
    }
    let watermark = Watermark::decode(r, allowed_lateness, idle_timeout)?;
    let windows = Windows::decode(r, resolutions)?;
    Ok((windows, watermark))
}

/// Where a [`Writer`] streams its bytes, their hash, and what went wrong there.
struct Spill {
    out: Box<dyn std::io::Write + Send>,
    written: u64,
    hash: Xxh3Default,
    error: Option<std::io::Error>,
}

/// Bytes a streaming [`Writer`] holds before it hands them on.
const SPILL_AT: usize = 1 << 20;

/// Appends encoded values, in memory or streamed to a file ([`Writer::streaming`]), so that a
/// checkpoint of hundreds of megabytes never sits in memory whole.
#[derive(Default)]
pub struct Writer(Vec<u8>, Option<Spill>);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("buffered", &self.0.len()).field("streaming", &self.1.is_some()).finish()
    }
}

impl Writer {
    /// A writer that hands its bytes to `out` a megabyte at a time, at item boundaries
    /// ([`Writer::boundary`]).
    pub fn streaming(out: Box<dyn std::io::Write + Send>) -> Self {
        let spill = Spill { out, written: 0, hash: Xxh3Default::new(), error: None };
        Self(Vec::with_capacity(SPILL_AT + (64 << 10)), Some(spill))
    }

    /// The bytes written (in memory).
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Between two items: a streaming writer hands on what it holds once it is a megabyte.
    pub fn boundary(&mut self) {
        if self.0.len() >= SPILL_AT {
            self.spill();
        }
    }

    fn spill(&mut self) {
        if let Some(spill) = &mut self.1 {
            if spill.error.is_none() {
                match spill.out.write_all(&self.0) {
                    Ok(()) => spill.written += self.0.len() as u64,
                    Err(e) => spill.error = Some(e),
                }
                spill.hash.update(&self.0);
            }
            self.0.clear();
        }
    }

    /// Hands on the rest and flushes a streaming writer; the bytes it wrote and their XXH3-64
    /// (equal to `xxh3_64` of them all).
    ///
    /// # Errors
    /// The first error of the output.
    pub fn finish_streaming(mut self) -> std::io::Result<(u64, u64)> {
        self.spill();
        match self.1.take() {
            Some(Spill { error: Some(e), .. }) => Err(e),
            Some(Spill { mut out, written, hash, error: None }) => out.flush().map(|()| (written, hash.digest())),
            None => Ok((self.0.len() as u64, xxhash_rust::xxh3::xxh3_64(&self.0))),
        }
    }

    /// A LEB128 varint.
    pub fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    /// One byte.
    pub fn u8(&mut self, n: u8) {
        self.0.push(n);
    }

    /// Eight bytes.
    pub fn i64(&mut self, n: i64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// Sixteen bytes.
    pub fn i128(&mut self, n: i128) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    /// Eight bytes, the exact bits.
    pub fn f64(&mut self, n: f64) {
        self.0.extend_from_slice(&n.to_bits().to_le_bytes());
    }

    /// Length, then the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    /// Length, then the UTF-8 bytes.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// 0 for `None`, else 1 and the value.
    pub fn option_i64(&mut self, n: Option<i64>) {
        match n {
            None => self.u8(0),
            Some(n) => {
                self.u8(1);
                self.i64(n);
            }
        }
    }
}

/// Reads encoded values, failing with the offset on anything short or malformed.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Succeeds only when every byte was read.
    ///
    /// # Errors
    /// [`SnapshotError::Corrupt`] at the first byte left over.
    pub fn finish(&self) -> Result<(), SnapshotError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.corrupt())
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or(self.corrupt())?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The error for the current offset.
    pub fn corrupt(&self) -> SnapshotError {
        SnapshotError::Corrupt(self.pos)
    }

    /// A LEB128 varint.
    ///
    /// # Errors
    /// When cut short or longer than 64 bits.
    pub fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            n |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.corrupt())
    }

    /// A count, bounded by the bytes left (each item takes at least one byte), so a damaged
    /// count cannot make the reader allocate without bound.
    ///
    /// # Errors
    /// When the count is larger than the bytes left.
    pub fn count(&mut self) -> Result<usize, SnapshotError> {
        let n = self.varint()?;
        usize::try_from(n).ok().filter(|&n| n <= self.bytes.len() - self.pos).ok_or(self.corrupt())
    }

    /// One byte.
    ///
    /// # Errors
    /// When cut short.
    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }

    /// Eight bytes.
    ///
    /// # Errors
    /// When cut short.
    pub fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().map_err(|_| self.corrupt())?))
    }

    /// Sixteen bytes.
    ///
    /// # Errors
    /// When cut short.
    pub fn i128(&mut self) -> Result<i128, SnapshotError> {
        Ok(i128::from_le_bytes(self.take(16)?.try_into().map_err(|_| self.corrupt())?))
    }

    /// Eight bytes, the exact bits.
    ///
    /// # Errors
    /// When cut short.
    pub fn f64(&mut self) -> Result<f64, SnapshotError> {
        Ok(f64::from_bits(self.i64()? as u64))
    }

    /// Length-prefixed bytes.
    ///
    /// # Errors
    /// When cut short.
    pub fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let n = self.count()?;
        self.take(n)
    }

    /// Length-prefixed UTF-8.
    ///
    /// # Errors
    /// When cut short or not UTF-8.
    pub fn str(&mut self) -> Result<&'a str, SnapshotError> {
        let at = self.corrupt();
        std::str::from_utf8(self.bytes()?).map_err(|_| at)
    }

    /// What [`Writer::option_i64`] wrote.
    ///
    /// # Errors
    /// When cut short or the tag is not 0 or 1.
    pub fn option_i64(&mut self) -> Result<Option<i64>, SnapshotError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.i64()?)),
            _ => Err(self.corrupt()),
        }
    }
}
