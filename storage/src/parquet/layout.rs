//! Where files go: the Hive-style tree under `<data-dir>/parquet/`, and the escaping that keeps
//! every value taken from data inside it.
//!
//! ```text
//! parquet/raw/<measurement>/region=<r>/date=<YYYY-MM-DD>/hour=<H>/<file>.parquet
//! parquet/rollups/resolution=<res>/region=<r>/date=<YYYY-MM-DD>/<file>.parquet
//! parquet/predictions/region=<r>/date=<YYYY-MM-DD>/<file>.parquet
//! ```
//!
//! Values from data (measurement, region) are percent-encoded the Hive way, which DuckDB, Polars,
//! pyarrow and Spark decode when they read partition values: every byte outside `a-z 0-9 _ - .`
//! becomes `%XX`, and so does a leading `.`. So `/`, `%`, NUL and `..` cannot leave or create a
//! directory, and upper-case letters are encoded too, so `EU` and `eu` cannot collide on a
//! case-insensitive file system. Ingest limits measurements and regions to 80 bytes, so a component
//! stays under the usual 255-byte limit even when every byte is encoded.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Longest measurement or region, in bytes, that ingest accepts (so an encoded path component fits
/// in 255 bytes).
pub const MAX_PARTITION_VALUE_BYTES: usize = 80;

const NANOS_PER_DAY: i64 = 86_400_000_000_000;
const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Percent-encodes a value for use as (part of) a path component.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, b) in value.bytes().enumerate() {
        let plain = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.is_empty() {
        out.push_str("%00"); // never an empty component; ingest rejects empty values anyway
    }
    out
}

/// Decodes [`escape`]'s output (what readers do with partition values).
pub fn unescape(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = component.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `YYYY-MM-DD` (UTC) of a time in ns since the epoch.
pub fn date(nanos: i64) -> String {
    let (y, m, d) = civil_from_days(nanos.div_euclid(NANOS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC hour (0–23) of a time in ns since the epoch.
pub fn hour(nanos: i64) -> i64 {
    nanos.rem_euclid(NANOS_PER_DAY) / NANOS_PER_HOUR
}

/// Parses the value of a `date=YYYY-MM-DD` folder into the start of that UTC day, in ns.
pub fn parse_date(value: &str) -> Option<i64> {
    let mut parts = value.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    days_from_civil(year, month, day).checked_mul(NANOS_PER_DAY)
}

/// Howard Hinnant's `days_from_civil`: (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The folder of raw points of `measurement` in `region` for the hour starting at `hour_start`.
pub fn raw_folder(root: &Path, measurement: &str, region: &str, hour_start: i64) -> PathBuf {
    root.join("raw")
        .join(escape(measurement))
        .join(format!("region={}", escape(region)))
        .join(format!("date={}", date(hour_start)))
        .join(format!("hour={}", hour(hour_start)))
}

/// The folder of rollups at `resolution` in `region` for the UTC day of `window_start`.
pub fn rollup_folder(root: &Path, resolution: &str, region: &str, window_start: i64) -> PathBuf {
    root.join("rollups")
        .join(format!("resolution={}", escape(resolution)))
        .join(format!("region={}", escape(region)))
        .join(format!("date={}", date(window_start)))
}

/// The folder of predictions in `region` for the UTC day of their `start`.
pub fn prediction_folder(root: &Path, region: &str, start: i64) -> PathBuf {
    root.join("predictions").join(format!("region={}", escape(region))).join(format!("date={}", date(start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_one_component_and_round_trip() {
        for value in ["..", ".", "a/b", "../../etc", "%2F", "x\0y", "EU", "eu", "région", "a b", "=", "hour=3", "C:\\x"]
        {
            let escaped = escape(value);
            assert!(!escaped.contains('/') && !escaped.contains('\\') && !escaped.contains('\0'), "{escaped}");
            assert!(!escaped.starts_with('.'), "{escaped}");
            assert!(!escaped.contains('='), "{escaped}");
            assert_eq!(unescape(&escaped).as_deref(), Some(value));
        }
        assert_ne!(escape("EU").to_lowercase(), escape("eu").to_lowercase(), "no case-only collisions");
        assert_eq!(escape("us-east-1"), "us-east-1");
        assert!(escape(&"\u{7f}".repeat(MAX_PARTITION_VALUE_BYTES)).len() < 255 - "region=".len());
    }

    #[test]
    fn dates_and_hours_are_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_700_000_000 * 1_000_000_000), "2023-11-14");
        assert_eq!(hour(1_700_000_000 * 1_000_000_000), 22);
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(951_782_400 * 1_000_000_000), "2000-02-29");
        for nanos in [0, -NANOS_PER_DAY, 951_782_400 * 1_000_000_000, 1_700_000_000 * 1_000_000_000] {
            let start = nanos.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY;
            assert_eq!(parse_date(&date(nanos)), Some(start));
        }
        assert_eq!(parse_date("2024-13-01"), None);
        let folder = raw_folder(Path::new("/d"), "cpu", "eu/..", 1_700_000_000 * 1_000_000_000);
        assert_eq!(folder, Path::new("/d/raw/cpu/region=eu%2F../date=2023-11-14/hour=22"));
    }
}
