//! The payload of a write record: what a replay needs to parse a request again exactly as it was
//! parsed live. The body is kept as line protocol (not as parsed batches) so a replay routes it
//! over the partitions configured then; the receive time is kept because it stamps lines without
//! a timestamp and bounds `max-future`, and the line length limit because a line over it was
//! rejected live.
//!
//! The lines a policy refused live (a tenant's series limit, which a replay cannot re-decide:
//! the server's memory of known series is gone) are kept by number and skipped.
//!
//! Layout: version `3` (u8), precision (u8), receive time (ns, i64 LE), longest accepted line
//! (bytes, u64 LE), the number of refused lines (u32 LE) and each line number (u64 LE,
//! ascending), then the body compressed with zstd (level 1: line protocol compresses about
//! tenfold at several hundred MB/s). Version 2 is version 3 without refused lines.

use std::cell::RefCell;

use crate::point::Precision;

/// Record kind of a write in the log.
pub const KIND: u8 = 1;

const VERSION: u8 = 3;
/// Version 2 (before refused lines) is still read: a log written by it may be replayed.
const VERSION_2: u8 = 2;
const HEADER: usize = 18;
const LEVEL: i32 = 1;
const PRECISIONS: [Precision; 6] = [
    Precision::Nanoseconds,
    Precision::Microseconds,
    Precision::Milliseconds,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

thread_local! {
    /// This thread's zstd context, kept: a new one per record (`zstd::bulk::compress`) allocated
    /// and zeroed its tables for every request logged.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Appends `body` compressed at [`LEVEL`] to `out`, by this thread's context.
fn compress_into(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(compressor) => compressor,
            None => slot.insert(zstd::bulk::Compressor::new(LEVEL)?),
        };
        let start = out.len();
        out.reserve(zstd::compress_bound(body.len()));
        let mut after_header = std::io::Cursor::new(out);
        after_header.set_position(start as u64);
        compressor.compress_to_buffer(body, &mut after_header).map(drop)
    })
}

/// A request as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    /// Timestamp precision of the body.
    pub precision: Precision,
    /// When it was received (ns since the epoch).
    pub received_at: i64,
    /// The longest line accepted (TCP's `max-line-bytes`; unlimited over HTTP).
    pub max_line_bytes: u64,
    /// Well-formed lines refused by a policy, ascending.
    pub refused: Vec<u64>,
    /// The line protocol, uncompressed.
    pub body: Vec<u8>,
}

/// Why a payload is not a write record.
#[derive(Debug, thiserror::Error)]
pub enum WriteRecordError {
    /// Cut short, or of an unknown version or precision.
    #[error("not a write record (version {0})")]
    Malformed(u8),
    /// The body does not decompress.
    #[error("write record body: {0}")]
    Body(#[from] std::io::Error),
}

impl WriteRecord {
    /// The payload of a record of these parts (`body` is not copied first).
    ///
    /// # Errors
    /// When zstd fails (it does not on memory buffers).
    pub fn encode(
        precision: Precision,
        received_at: i64,
        max_line_bytes: u64,
        refused: &[u64],
        body: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let precision = PRECISIONS.iter().position(|&p| p == precision).unwrap_or(0) as u8;
        let mut out = vec![VERSION, precision];
        out.extend_from_slice(&received_at.to_le_bytes());
        out.extend_from_slice(&max_line_bytes.to_le_bytes());
        let count = u32::try_from(refused.len()).map_err(std::io::Error::other)?;
        out.extend_from_slice(&count.to_le_bytes());
        for line in refused {
            out.extend_from_slice(&line.to_le_bytes());
        }
        compress_into(body, &mut out)?;
        Ok(out)
    }

    /// Reads a payload written by [`WriteRecord::encode`].
    ///
    /// # Errors
    /// [`WriteRecordError`] for anything else.
    pub fn decode(payload: &[u8]) -> Result<Self, WriteRecordError> {
        let version = payload.first().copied().unwrap_or(0);
        let malformed = || WriteRecordError::Malformed(version);
        if !(version == VERSION || version == VERSION_2) || payload.len() < HEADER {
            return Err(malformed());
        }
        let Some(&precision) = PRECISIONS.get(usize::from(payload[1])) else { return Err(malformed()) };
        let received_at = i64::from_le_bytes(payload[2..10].try_into().map_err(|_| malformed())?);
        let max_line_bytes = u64::from_le_bytes(payload[10..HEADER].try_into().map_err(|_| malformed())?);
        let mut rest = &payload[HEADER..];
        let mut refused = Vec::new();
        if version == VERSION {
            let count = rest.get(..4).ok_or_else(malformed)?;
            let count = u32::from_le_bytes(count.try_into().map_err(|_| malformed())?) as usize;
            let lines = rest.get(4..4 + count * 8).ok_or_else(malformed)?;
            refused = lines.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect();
            rest = &rest[4 + count * 8..];
        }
        let mut body = Vec::new();
        zstd::stream::copy_decode(rest, &mut body)?;
        Ok(Self { precision, received_at, max_line_bytes, refused, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_compresses_line_protocol() {
        let body: Vec<u8> = (0..5000)
            .flat_map(|i| {
                format!(
                    "cpu,host=h{i},region=eu usage_user={}.{},usage_system=3.5 1700000000000000000\n",
                    i % 100,
                    i % 10
                )
                .into_bytes()
            })
            .collect();
        let record = WriteRecord {
            precision: Precision::Seconds,
            received_at: -42,
            max_line_bytes: 1 << 20,
            refused: vec![3, 17, 4999],
            body,
        };
        let payload = WriteRecord::encode(
            record.precision,
            record.received_at,
            record.max_line_bytes,
            &record.refused,
            &record.body,
        )
        .unwrap();
        assert!(payload.len() * 5 < record.body.len(), "{} of {}", payload.len(), record.body.len());
        assert_eq!(WriteRecord::decode(&payload).unwrap(), record);
        assert!(WriteRecord::decode(&payload[..9]).is_err());
        assert!(WriteRecord::decode(&[1; 18]).is_err(), "another version");
        let mut damaged = payload.clone();
        damaged.truncate(payload.len() - 3);
        assert!(WriteRecord::decode(&damaged).is_err());
    }

    #[test]
    fn a_version_2_record_reads_with_no_refused_lines() {
        let mut payload = vec![2, 3];
        payload.extend_from_slice(&7i64.to_le_bytes());
        payload.extend_from_slice(&64u64.to_le_bytes());
        payload.extend_from_slice(&zstd::bulk::compress(b"m v=1 1\n", LEVEL).unwrap());
        let record = WriteRecord::decode(&payload).unwrap();
        assert_eq!((record.precision, record.received_at, record.max_line_bytes), (Precision::Seconds, 7, 64));
        assert_eq!((record.refused.len(), record.body.as_slice()), (0, &b"m v=1 1\n"[..]));
    }
}
