//! The protocols beside line protocol. Each decodes its body into points and renders them as
//! line protocol, so one parser validates every point (names, sizes, times), the write-ahead log
//! keeps one record format, and a replay needs no protocol code. Rendering costs a fraction of
//! parsing; these protocols carry far fewer points per byte than line protocol does.
//!
//! # Layout
//! - [`prometheus`]: Prometheus remote write 1.0 (snappy-compressed protobuf).
//! - [`otlp`]: OpenTelemetry OTLP/HTTP metrics (protobuf or JSON).
//! - [`collectd`]: collectd's `write_http` JSON.
//! - [`graphite`]: Graphite plaintext (`path value timestamp`, tagged paths), mapped by templates.
//! - [`statsd`]: StatsD lines, aggregated per flush interval.
//! - [`json_lines`]: one JSON object per line, Augur's own simple format.

pub mod collectd;
pub mod graphite;
pub mod json_lines;
pub mod otlp;
pub mod prometheus;
pub mod statsd;

use crate::line_protocol::render_point;
use crate::point::FieldValue;

/// What a decoder knows of the request beside its body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The Content-Type essence, lowercase (`""` when absent).
    pub content_type: &'a str,
    /// The most bytes anything decompressed may take.
    pub limit: u64,
    /// The unit of bare integer timestamps, where the protocol lets the client choose.
    pub precision: crate::point::Precision,
    /// How OTLP attributes become tags.
    pub otlp: &'a crate::config::OtlpConfig,
}

/// A body turned into line protocol.
#[derive(Debug)]
pub struct Converted {
    /// One line per point.
    pub lines: Vec<u8>,
    /// For each line of `lines`, the number of the item of the body it came from.
    sources: Vec<u32>,
    /// What the body's items are called in errors: `line`, `series`.
    item: &'static str,
    /// What could not become a point, each named (the first [`crate::write::MAX_REPORTED_ERRORS`]).
    pub errors: Vec<String>,
    /// All such items.
    pub error_count: usize,
    /// Values skipped on purpose, not errors (Prometheus staleness markers).
    pub skipped: usize,
}

impl Converted {
    /// An empty conversion of a body whose items are called `item`, numbered from 1.
    pub fn new(item: &'static str) -> Self {
        Self { lines: Vec::new(), sources: Vec::new(), item, errors: Vec::new(), error_count: 0, skipped: 0 }
    }

    /// Appends a point from item `source`; tags must be in key order (see [`render_point`]).
    pub fn point<'a>(
        &mut self,
        source: usize,
        measurement: &str,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
        fields: impl IntoIterator<Item = (&'a str, FieldValue<&'a str>)>,
        time: Option<i64>,
    ) {
        render_point(&mut self.lines, measurement, tags, fields, time);
        self.sources.push(u32::try_from(source).unwrap_or(u32::MAX));
    }

    /// Records that item `source` (or a part of it) could not become a point.
    pub fn reject(&mut self, source: usize, error: impl FnOnce() -> String) {
        if self.errors.len() < crate::write::MAX_REPORTED_ERRORS {
            self.errors.push(format!("{} {source}: {}", self.item, error()));
        }
        self.error_count += 1;
    }

    /// Names the point on line `line` (1-based) of `lines` by the item it came from, quoting it:
    /// the number of a line the client never saw means nothing to it.
    pub fn describe(&self, line: usize, reason: &impl std::fmt::Display) -> String {
        let text = self.lines.split(|&b| b == b'\n').nth(line.wrapping_sub(1)).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[..text.len().min(200)]);
        match self.sources.get(line.wrapping_sub(1)) {
            Some(source) => format!("{} {source}: {reason} (as line protocol: `{text}`)", self.item),
            None => format!("point `{text}`: {reason}"),
        }
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
