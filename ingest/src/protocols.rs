//! The protocols beside line protocol. Each decodes its body into points and renders them as
//! line protocol, so one parser validates every point (names, sizes, times), the write-ahead log
//! keeps one record format, and a replay needs no protocol code. Rendering costs a fraction of
//! parsing; these protocols carry far fewer points per byte than line protocol does.
//!
//! # Layout
//! - [`prometheus`]: Prometheus remote write 1.0 (snappy-compressed protobuf).

pub mod prometheus;

/// A body turned into line protocol.
#[derive(Debug, Default)]
pub struct Converted {
    /// One line per point.
    pub lines: Vec<u8>,
    /// What could not become a point, each named (the first [`crate::write::MAX_REPORTED_ERRORS`]).
    pub errors: Vec<String>,
    /// All such items.
    pub error_count: usize,
    /// Values skipped on purpose, not errors (Prometheus staleness markers).
    pub skipped: usize,
}

impl Converted {
    /// Records an item that could not become a point.
    pub fn reject(&mut self, error: impl FnOnce() -> String) {
        if self.errors.len() < crate::write::MAX_REPORTED_ERRORS {
            self.errors.push(error());
        }
        self.error_count += 1;
    }
}

/// Why a whole body could not be read: nothing of it is stored.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A compression frame that does not decode.
    #[error("invalid {format} body: {reason}")]
    Compression {
        /// `snappy`, `gzip`.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// Bytes that are not the protocol's message.
    #[error("invalid {format}: {reason}")]
    Message {
        /// `protobuf`, `JSON`.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// Decompressed past the body limit.
    #[error("request body is larger than the limit of {0} bytes after decompression")]
    TooLarge(u64),
}
