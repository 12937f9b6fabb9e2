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
//! `watermark.rs`).

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
    let mut w = Writer(Vec::with_capacity(1 << 16));
    w.0.extend_from_slice(MAGIC);
    let resolutions = windows.resolutions();
    w.varint(resolutions.len() as u64);
    for resolution in resolutions {
        w.i64(resolution.nanos);
    }
    watermark.encode(&mut w);
    windows.encode(&mut w);
    w.0
}

/// Decodes what [`encode`] wrote, for windows at `resolutions` and a watermark with these
/// settings (ns).
///
/// # Errors
/// [`SnapshotError`] when the bytes are not a whole snapshot or the resolutions differ.
pub fn decode(
    bytes: &[u8],
    resolutions: Vec<Resolution>,
    (allowed_lateness, idle_timeout): (i64, i64),
) -> Result<(Windows, Watermark), SnapshotError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(SnapshotError::Corrupt(0));
    }
    let taken = (0..r.count()?).map(|_| r.i64()).collect::<Result<Vec<_>, _>>()?;
    let now: Vec<i64> = resolutions.iter().map(|r| r.nanos).collect();
    if taken != now {
        return Err(SnapshotError::Resolutions { taken, now });
    }
    let watermark = Watermark::decode(&mut r, allowed_lateness, idle_timeout)?;
    let windows = Windows::decode(&mut r, resolutions)?;
    if r.pos != bytes.len() {
        return Err(SnapshotError::Corrupt(r.pos));
    }
    Ok((windows, watermark))
}

/// Appends encoded values.
#[derive(Debug, Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
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
