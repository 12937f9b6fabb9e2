//! InfluxDB line protocol: a zero-copy parser over a request body, and rendering back to text.
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! The parser hands out one [`ParsedLine`] at a time, borrowing the body: names stay escaped until
//! the batch builder copies them out, so the fast path allocates nothing per line. Every rejected
//! line is a [`LineError`] naming its line number, byte column and reason; the lines around it
//! still parse.
//!
//! Escaping follows the InfluxDB spec. In measurements, tag keys, tag values and field keys, a
//! backslash before `,`, `=`, space or `\` stands for that character; any other backslash is
//! literal (so Windows paths pass unchanged). In string field values `\"` and `\\` are escapes and
//! any other backslash is literal. A newline always ends a line, also inside quotes.

mod number;
mod render;
mod scan;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use render::{escape_measurement_into, escape_name_into, escape_string_into, render_point, render_points};

use crate::point::{FieldValue, Point, Precision};

/// Everything that can be wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("NUL byte (0x00): not allowed anywhere in a line (PostgreSQL text and most tools cannot hold it)")]
    NulByte,
    #[error("empty measurement")]
    EmptyMeasurement,
    #[error("missing field set (a line needs at least one field, e.g. `cpu value=1`)")]
    MissingFields,
    #[error("tag key without `=value`")]
    MissingTagValue,
    #[error("empty tag key")]
    EmptyTagKey,
    #[error("empty tag value")]
    EmptyTagValue,
    #[error("unescaped `=` in tag value (write it as `\\=`)")]
    EqualsInTagValue,
    #[error("duplicate tag key `{0}`")]
    DuplicateTag(String),
    #[error("empty field key")]
    EmptyFieldKey,
    #[error("field key without `=value`")]
    MissingFieldEquals,
    #[error("missing field value")]
    MissingFieldValue,
    #[error("duplicate field key `{0}`")]
    DuplicateField(String),
    #[error("`time` is reserved and cannot be a {0} key")]
    ReservedKey(&'static str),
    #[error("unterminated string: no closing `\"` before the end of the line")]
    UnterminatedString,
    #[error("unexpected {} after a string field value", describe_byte(*.0))]
    AfterString(u8),
    #[error(
        "invalid field value `{0}`: expected a float, an integer (42i), an unsigned (42u), a boolean or a \"string\""
    )]
    InvalidValue(String),
    #[error("NaN and infinity cannot be written as field values")]
    NotFinite,
    #[error("float out of range `{0}`")]
    FloatOutOfRange(String),
    #[error("integer out of range `{0}` (signed 64-bit)")]
    IntegerOutOfRange(String),
    #[error("unsigned integer out of range `{0}` (unsigned 64-bit)")]
    UnsignedOutOfRange(String),
    #[error("invalid timestamp `{0}`: expected an integer")]
    InvalidTimestamp(String),
    #[error("timestamp `{0}` out of range for precision {1} (nanoseconds must fit in a signed 64-bit integer)")]
    TimestampOutOfRange(String, Precision),
    #[error("unexpected text after the timestamp")]
    TrailingText,
    #[error("timestamp is more than {} ahead of the server's clock (model.max-future)", humantime_serde::re::humantime::format_duration(*.0))]
    TooFarInFuture(std::time::Duration),
    #[error("backslash at the end of the line escapes nothing")]
    TrailingBackslash,
    #[error("line longer than the limit of {0} bytes")]
    LineTooLong(usize),
    #[error("{0} longer than the limit of {1} bytes (it names a directory of the Parquet tree)")]
    NameTooLong(&'static str, usize),
    #[error(transparent)]
    SeriesLimit(#[from] crate::limits::SeriesLimited),
}

/// A byte for an error message: the character if it is printable ASCII, else its value.
fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// A rejected line: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct LineError {
    /// 1-based line number in the request body (or in the TCP stream).
    pub line: usize,
    /// 1-based byte column within the line.
    pub column: usize,
    /// What is wrong.
    pub reason: Reason,
}

/// A name (measurement, tag key or value, field key) or string value as it appears in the input:
/// still escaped if `escaped` is set.
///
/// Only the parser makes these, from validated UTF-8 cut at ASCII delimiters: the batch relies on
/// it (see `PointBatch`), so the fields are not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a> {
    /// The raw bytes between the delimiters (quotes excluded for strings). Valid UTF-8.
    pub(crate) raw: &'a [u8],
    /// Whether `raw` holds a backslash, i.e. whether unescaping may change it.
    pub(crate) escaped: bool,
}

impl<'a> Escaped<'a> {
    /// The raw bytes as they appear in the input (quotes excluded for strings).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Appends the unescaped name to `out`.
    pub fn unescape_name_into(&self, out: &mut Vec<u8>) {
        if self.escaped {
            unescape_into(self.raw, out, |c| matches!(c, b',' | b'=' | b' ' | b'\\'));
        } else {
            out.extend_from_slice(self.raw);
        }
    }

    /// Appends the unescaped string field value to `out`.
    pub fn unescape_string_into(&self, out: &mut Vec<u8>) {
        if self.escaped {
            unescape_into(self.raw, out, |c| matches!(c, b'"' | b'\\'));
        } else {
            out.extend_from_slice(self.raw);
        }
    }

    /// The unescaped name, borrowed when nothing was escaped.
    pub fn name(&self) -> Cow<'a, [u8]> {
        if self.escaped {
            let mut out = Vec::with_capacity(self.raw.len());
            self.unescape_name_into(&mut out);
            Cow::Owned(out)
        } else {
            Cow::Borrowed(self.raw)
        }
    }
}

fn unescape_into(raw: &[u8], out: &mut Vec<u8>, is_escapable: impl Fn(u8) -> bool) {
    let mut i = 0;
    while let Some(offset) = memchr::memchr(b'\\', &raw[i..]) {
        let at = i + offset;
        out.extend_from_slice(&raw[i..at]);
        match raw.get(at + 1) {
            Some(&c) if is_escapable(c) => {
                out.push(c);
                i = at + 2;
            }
            _ => {
                out.push(b'\\');
                i = at + 1;
            }
        }
    }
    out.extend_from_slice(&raw[i..]);
}

/// One parsed line, borrowing the body (names) and the parser (tag and field lists). Only the
/// parser makes these.
#[derive(Debug)]
pub struct ParsedLine<'p, 'a> {
    pub(crate) line: usize,
    /// The whole line, for columns of its parts.
    pub(crate) text: &'a [u8],
    pub(crate) measurement: Escaped<'a>,
    pub(crate) tags: &'p [(Escaped<'a>, Escaped<'a>)],
    pub(crate) fields: &'p [(Escaped<'a>, FieldValue<Escaped<'a>>)],
    pub(crate) time: i64,
    pub(crate) canonical_series: Option<&'a [u8]>,
}

impl<'p, 'a> ParsedLine<'p, 'a> {
    /// 1-based line number.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based byte column of a name of this line.
    pub fn column_of(&self, name: &Escaped<'_>) -> usize {
        (name.raw.as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize) + 1
    }

    /// The measurement.
    pub fn measurement(&self) -> Escaped<'a> {
        self.measurement
    }

    /// Tags sorted by unescaped key; keys unique.
    pub fn tags(&self) -> &'p [(Escaped<'a>, Escaped<'a>)] {
        self.tags
    }

    /// Fields in input order; keys unique.
    pub fn fields(&self) -> &'p [(Escaped<'a>, FieldValue<Escaped<'a>>)] {
        self.fields
    }

    /// Nanoseconds since the Unix epoch (the request's receive time when the line had none).
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The raw `measurement,tags` text when it already is the canonical series key (no escapes,
    /// tags in order), so the series id can be hashed without copying.
    pub fn canonical_series(&self) -> Option<&'a [u8]> {
        self.canonical_series
    }

    /// An owned copy of this line's point.
    pub fn to_point(&self) -> Point {
        let text = |e: &Escaped<'_>, string: bool| {
            let mut out = Vec::new();
            if string {
                e.unescape_string_into(&mut out);
            } else {
                e.unescape_name_into(&mut out);
            }
            String::from_utf8(out).unwrap_or_default()
        };
        Point {
            measurement: text(&self.measurement, false),
            tags: self.tags.iter().map(|(k, v)| (text(k, false), text(v, false))).collect(),
            fields: self.fields.iter().map(|(k, v)| (text(k, false), (*v).map_string(|s| text(&s, true)))).collect(),
            time: self.time,
        }
    }
}

/// Parses a body of line protocol one line at a time.
///
/// A lending iterator: each [`ParsedLine`] borrows the parser until the next call.
#[derive(Debug)]
pub struct Parser<'a> {
    body: &'a [u8],
    pos: usize,
    line: usize,
    /// The body is known to be valid UTF-8 up to here; checked once for the whole body and again
    /// only past a bad line, so clean bodies are validated in one SIMD-friendly pass.
    utf8_valid_until: usize,
    /// Where the next NUL byte is (the body's length if none): found by one `memchr` pass, so
    /// clean bodies cost one scan.
    next_nul: usize,
    precision: Precision,
    default_time: i64,
    max_line_bytes: usize,
    /// Latest accepted timestamp (ns) and the allowance it came from, for the error.
    future_limit: Option<(i64, std::time::Duration)>,
    tags: Vec<(Escaped<'a>, Escaped<'a>)>,
    fields: Vec<(Escaped<'a>, FieldValue<Escaped<'a>>)>,
}

impl<'a> Parser<'a> {
    /// A parser over `body`. `default_time` (nanoseconds) is used for lines without a timestamp;
    /// `first_line` numbers the first line (1 for a request body; more for a TCP stream).
    pub fn new(body: &'a [u8], precision: Precision, default_time: i64, first_line: usize) -> Self {
        Self {
            body,
            pos: 0,
            line: first_line.saturating_sub(1),
            utf8_valid_until: 0,
            next_nul: memchr::memchr(0, body).unwrap_or(body.len()),
            precision,
            default_time,
            max_line_bytes: usize::MAX,
            future_limit: None,
            tags: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Rejects lines longer than `limit` bytes (newline excluded); no limit by default.
    pub fn max_line_bytes(mut self, limit: usize) -> Self {
        self.max_line_bytes = limit;
        self
    }

    /// Rejects timestamps more than `allowance` after the default time (the receive time).
    pub fn max_future(mut self, allowance: std::time::Duration) -> Self {
        let nanos = i64::try_from(allowance.as_nanos()).unwrap_or(i64::MAX);
        self.future_limit = Some((self.default_time.saturating_add(nanos), allowance));
        self
    }

    /// The number of the last line returned (or skipped).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The next point or bad line; blank lines and `#` comments are skipped. `None` at the end.
    #[allow(clippy::should_implement_trait)] // a lending iterator cannot implement `Iterator`
    pub fn next(&mut self) -> Option<Result<ParsedLine<'_, 'a>, LineError>> {
        loop {
            if self.pos >= self.body.len() {
                return None;
            }
            let start = self.pos;
            let end = memchr::memchr(b'\n', &self.body[start..]).map_or(self.body.len(), |n| start + n);
            self.pos = end + 1;
            self.line += 1;
            if self.next_nul < start {
                self.next_nul = memchr::memchr(0, &self.body[start..]).map_or(self.body.len(), |n| start + n);
            }
            if end - start > self.max_line_bytes {
                return Some(Err(self.error(self.max_line_bytes, Reason::LineTooLong(self.max_line_bytes))));
            }
            if self.next_nul < end {
                return Some(Err(self.error(self.next_nul - start, Reason::NulByte)));
            }
            let mut line = &self.body[start..end];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let Some(first) = line.iter().position(|&b| b != b' ' && b != b'\t') else {
                continue; // blank
            };
            if line[first] == b'#' {
                continue; // comment
            }
            if end > self.utf8_valid_until {
                if let Err(column) = self.check_utf8(start, end) {
                    return Some(Err(self.error(column, Reason::InvalidUtf8)));
                }
            }
            let number = self.line;
            return Some(
                scan::scan_line(line, first, &mut self.tags, &mut self.fields)
                    .and_then(|scanned| {
                        let time = match scanned.timestamp {
                            Some((column, raw)) => {
                                let time =
                                    number::parse_timestamp(raw, self.precision).map_err(|reason| (column, reason))?;
                                match self.future_limit {
                                    Some((max, allowance)) if time > max => {
                                        return Err((column, Reason::TooFarInFuture(allowance)));
                                    }
                                    _ => time,
                                }
                            }
                            None => self.default_time,
                        };
                        Ok(ParsedLine {
                            line: number,
                            text: line,
                            measurement: scanned.measurement,
                            tags: &self.tags,
                            fields: &self.fields,
                            time,
                            canonical_series: scanned.canonical_series,
                        })
                    })
                    .map_err(|(column, reason)| LineError { line: number, column: column + 1, reason }),
            );
        }
    }

    /// Validates UTF-8 from `start` on; `Err(column)` (0-based) if the line `start..end` is bad.
    fn check_utf8(&mut self, start: usize, end: usize) -> Result<(), usize> {
        match std::str::from_utf8(&self.body[start..]) {
            Ok(_) => {
                self.utf8_valid_until = self.body.len();
                Ok(())
            }
            Err(e) if start + e.valid_up_to() >= end => {
                self.utf8_valid_until = start + e.valid_up_to();
                Ok(())
            }
            Err(e) => Err(e.valid_up_to()),
        }
    }

    fn error(&self, column: usize, reason: Reason) -> LineError {
        LineError { line: self.line, column: column + 1, reason }
    }
}

/// Parses a whole body into owned points and errors. Convenient for tests and tools; the ingest
/// path uses [`Parser`] directly to avoid the copies.
pub fn parse_points(body: &[u8], precision: Precision, default_time: i64) -> (Vec<Point>, Vec<LineError>) {
    let mut parser = Parser::new(body, precision, default_time, 1);
    let (mut points, mut errors) = (Vec::new(), Vec::new());
    while let Some(result) = parser.next() {
        match result {
            Ok(line) => points.push(line.to_point()),
            Err(e) => errors.push(e),
        }
    }
    (points, errors)
}
