//! The telemetry data model: typed field values, owned points and timestamp precision.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock in nanoseconds since the Unix epoch: the timestamp of lines that carry none.
pub fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A typed field value. `S` is the string type: `&str` for views into a batch, `String` for owned
/// points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<S = String> {
    /// A 64-bit float. Never NaN or infinite: line protocol has no spelling for them.
    Float(f64),
    /// A signed 64-bit integer (`42i`).
    Integer(i64),
    /// An unsigned 64-bit integer (`42u`).
    Unsigned(u64),
    /// A boolean (`t`, `true`, `F`, ...).
    Boolean(bool),
    /// A UTF-8 string (`"text"`).
    String(S),
}

impl<S> FieldValue<S> {
    /// The same value with its string (if it is one) mapped by `f`.
    pub fn map_string<T>(self, f: impl FnOnce(S) -> T) -> FieldValue<T> {
        match self {
            Self::Float(v) => FieldValue::Float(v),
            Self::Integer(v) => FieldValue::Integer(v),
            Self::Unsigned(v) => FieldValue::Unsigned(v),
            Self::Boolean(v) => FieldValue::Boolean(v),
            Self::String(s) => FieldValue::String(f(s)),
        }
    }
}

impl<S: AsRef<str>> FieldValue<S> {
    /// A borrowed view of this value.
    pub fn as_ref(&self) -> FieldValue<&str> {
        match self {
            Self::String(s) => FieldValue::String(s.as_ref()),
            Self::Float(v) => FieldValue::Float(*v),
            Self::Integer(v) => FieldValue::Integer(*v),
            Self::Unsigned(v) => FieldValue::Unsigned(*v),
            Self::Boolean(v) => FieldValue::Boolean(*v),
        }
    }
}

impl FieldValue<&str> {
    /// An owned copy of this value.
    pub fn to_owned(&self) -> FieldValue<String> {
        (*self).map_string(str::to_owned)
    }
}

/// An owned point: measurement, tags sorted by key, fields in input order, time in nanoseconds
/// since the Unix epoch (UTC).
///
/// The hot path never builds these (it writes [`crate::PointBatch`]es); they exist for tests,
/// tools and small inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement name, never empty.
    pub measurement: String,
    /// Tags sorted by key, keys unique, keys and values never empty.
    pub tags: Vec<(String, String)>,
    /// Fields, at least one, keys unique.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch.
    pub time: i64,
}

/// The unit of the timestamps in a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB v1 only).
    Minutes,
    /// Hours (InfluxDB v1 only).
    Hours,
}

impl Precision {
    /// Nanoseconds per unit of this precision.
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Self::Nanoseconds => 1,
            Self::Microseconds => 1_000,
            Self::Milliseconds => 1_000_000,
            Self::Seconds => 1_000_000_000,
            Self::Minutes => 60_000_000_000,
            Self::Hours => 3_600_000_000_000,
        }
    }

    /// Parses the `precision` parameter of the InfluxDB v1 `/write` API: `n` or `ns` (or empty),
    /// `u`, `ms`, `s`, `m`, `h`, as InfluxDB 1.x's handler takes them. Returns `None` for anything
    /// else, `us` included: InfluxDB 1.x reads an unknown precision as nanoseconds, so a client
    /// sending `us` there stores times a thousand times too early; a refusal says so instead.
    pub fn from_v1(s: &str) -> Option<Self> {
        Some(match s {
            "" | "n" | "ns" => Self::Nanoseconds,
            "u" => Self::Microseconds,
            "ms" => Self::Milliseconds,
            "s" => Self::Seconds,
            "m" => Self::Minutes,
            "h" => Self::Hours,
            _ => return None,
        })
    }

    /// Parses the `precision` parameter of the InfluxDB v2 `/api/v2/write` API: `ns` (or empty),
    /// `us`, `ms`, `s`. Returns `None` for anything else.
    pub fn from_v2(s: &str) -> Option<Self> {
        Some(match s {
            "" | "ns" => Self::Nanoseconds,
            "us" => Self::Microseconds,
            "ms" => Self::Milliseconds,
            "s" => Self::Seconds,
            _ => return None,
        })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nanoseconds => "ns",
            Self::Microseconds => "us",
            Self::Milliseconds => "ms",
            Self::Seconds => "s",
            Self::Minutes => "m",
            Self::Hours => "h",
        })
    }
}
