//! The per-line scanner: splits one line into measurement, tags, fields and timestamp.

use std::cmp::Ordering;

use super::{number, Escaped, Reason};
use crate::point::FieldValue;

/// What stops a name: a table per element kind, indexed by byte, so the inner loop is one load and
/// one branch per byte.
struct Stops([bool; 256]);

impl Stops {
    const fn new(stops: &[u8]) -> Self {
        let mut table = [false; 256];
        table[b'\\' as usize] = true;
        let mut i = 0;
        while i < stops.len() {
            table[stops[i] as usize] = true;
            i += 1;
        }
        Self(table)
    }
}

const MEASUREMENT: Stops = Stops::new(b", ");
const NAME: Stops = Stops::new(b",= ");

/// The parts of a line that are not kept in the parser's tag and field lists.
pub(super) struct Scanned<'a> {
    pub(super) measurement: Escaped<'a>,
    /// Column and text of the timestamp, if the line has one.
    pub(super) timestamp: Option<(usize, &'a [u8])>,
    pub(super) canonical_series: Option<&'a [u8]>,
}

type ScanResult<T> = Result<T, (usize, Reason)>;

/// Scans `line` (no newline) from `start`, the first non-blank byte. Errors carry a 0-based column.
pub(super) fn scan_line<'a>(
    line: &'a [u8],
    start: usize,
    tags: &mut Vec<(Escaped<'a>, Escaped<'a>)>,
    fields: &mut Vec<(Escaped<'a>, FieldValue<Escaped<'a>>)>,
) -> ScanResult<Scanned<'a>> {
    tags.clear();
    fields.clear();

    let (measurement, mut i) = scan_name(line, start, &MEASUREMENT)?;
    if measurement.raw.is_empty() {
        return Err((start, Reason::EmptyMeasurement));
    }
    let mut series_escaped = measurement.escaped;
    while line.get(i) == Some(&b',') {
        let key_start = i + 1;
        let (key, eq) = scan_name(line, key_start, &NAME)?;
        if line.get(eq) != Some(&b'=') {
            return Err((eq, Reason::MissingTagValue));
        }
        if key.raw.is_empty() {
            return Err((key_start, Reason::EmptyTagKey));
        }
        if key.raw == b"time" {
            return Err((key_start, Reason::ReservedKey("tag")));
        }
        let (value, end) = scan_name(line, eq + 1, &NAME)?;
        if value.raw.is_empty() {
            return Err((eq + 1, Reason::EmptyTagValue));
        }
        if line.get(end) == Some(&b'=') {
            return Err((end, Reason::EqualsInTagValue));
        }
        series_escaped |= key.escaped || value.escaped;
        tags.push((key, value));
        i = end;
    }
    let series_end = i;
    let in_order = sort_tags(tags).map_err(|key| (column_of(line, &key), Reason::DuplicateTag(lossy(&key))))?;
    let canonical_series = (in_order && !series_escaped).then(|| &line[start..series_end]);

    i = skip_spaces(line, i);
    if i == series_end || i >= line.len() {
        return Err((i.min(line.len()), Reason::MissingFields));
    }
    loop {
        let key_start = i;
        let (key, eq) = scan_name(line, key_start, &NAME)?;
        if line.get(eq) != Some(&b'=') {
            return Err((eq, Reason::MissingFieldEquals));
        }
        if key.raw.is_empty() {
            return Err((key_start, Reason::EmptyFieldKey));
        }
        if key.raw == b"time" {
            return Err((key_start, Reason::ReservedKey("field")));
        }
        let (value, end) = scan_value(line, eq + 1)?;
        if fields.len() < LINEAR_DUPLICATE_CHECK && is_duplicate(fields, &key) {
            return Err((key_start, Reason::DuplicateField(lossy(&key))));
        }
        fields.push((key, value));
        match line.get(end) {
            None => {
                i = end;
                break;
            }
            Some(b',') => i = end + 1,
            Some(b' ') => {
                i = end;
                break;
            }
            Some(&other) => return Err((end, Reason::AfterString(other))),
        }
    }

    if fields.len() > LINEAR_DUPLICATE_CHECK {
        check_many_fields(fields).map_err(|key| (column_of(line, &key), Reason::DuplicateField(lossy(&key))))?;
    }

    i = skip_spaces(line, i);
    let timestamp = if i < line.len() {
        let ts_start = i;
        let ts_end = memchr::memchr(b' ', &line[i..]).map_or(line.len(), |n| i + n);
        if skip_spaces(line, ts_end) < line.len() {
            return Err((skip_spaces(line, ts_end), Reason::TrailingText));
        }
        Some((ts_start, &line[ts_start..ts_end]))
    } else {
        None
    };
    Ok(Scanned { measurement, timestamp, canonical_series })
}

/// Scans a name from `start` to the first unescaped stop byte; returns it and the stop position.
fn scan_name<'a>(line: &'a [u8], start: usize, stops: &Stops) -> ScanResult<(Escaped<'a>, usize)> {
    let mut i = start;
    let mut escaped = false;
    while i < line.len() {
        let b = line[i];
        if stops.0[b as usize] {
            if b != b'\\' {
                break;
            }
            if i + 1 == line.len() {
                return Err((i, Reason::TrailingBackslash));
            }
            escaped = true;
            i += 2;
        } else {
            i += 1;
        }
    }
    Ok((Escaped { raw: &line[start..i], escaped }, i))
}

/// Scans a field value from `start`; returns it and the position just past it.
fn scan_value(line: &[u8], start: usize) -> ScanResult<(FieldValue<Escaped<'_>>, usize)> {
    match line.get(start) {
        None | Some(b',') | Some(b' ') => Err((start, Reason::MissingFieldValue)),
        Some(b'"') => {
            let mut i = start + 1;
            let mut escaped = false;
            loop {
                let Some(n) = memchr::memchr2(b'"', b'\\', &line[i..]) else {
                    return Err((start, Reason::UnterminatedString));
                };
                i += n;
                if line[i] == b'"' {
                    let raw = &line[start + 1..i];
                    return Ok((FieldValue::String(Escaped { raw, escaped }), i + 1));
                }
                escaped = true;
                i += 2; // a backslash and the byte it escapes (or keeps literal)
                if i > line.len() {
                    return Err((start, Reason::UnterminatedString));
                }
            }
        }
        Some(_) => {
            let end = memchr::memchr2(b',', b' ', &line[start..]).map_or(line.len(), |n| start + n);
            let value = number::parse_value(&line[start..end]).map_err(|reason| (start, reason))?;
            Ok((value, end))
        }
    }
}

fn skip_spaces(line: &[u8], mut i: usize) -> usize {
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Compares two names by their unescaped bytes, copying only when one holds an escape.
fn cmp_names(a: &Escaped<'_>, b: &Escaped<'_>) -> Ordering {
    if !a.escaped && !b.escaped {
        a.raw.cmp(b.raw)
    } else {
        a.name().cmp(&b.name())
    }
}

/// Sorts tags by key; `Ok(true)` if they already were in order. `Err` is the later of two equal
/// keys.
fn sort_tags<'a>(tags: &mut [(Escaped<'a>, Escaped<'a>)]) -> Result<bool, Escaped<'a>> {
    let in_order = tags.windows(2).all(|w| cmp_names(&w[0].0, &w[1].0) == Ordering::Less);
    if in_order {
        return Ok(true);
    }
    tags.sort_by(|a, b| cmp_names(&a.0, &b.0)); // stable: equal keys keep their input order
    match tags.windows(2).find(|w| cmp_names(&w[0].0, &w[1].0) == Ordering::Equal) {
        Some(w) => Err(w[1].0),
        None => Ok(false),
    }
}

/// The 0-based column of a name cut from `line`.
fn column_of(line: &[u8], name: &Escaped<'_>) -> usize {
    (name.raw.as_ptr() as usize).saturating_sub(line.as_ptr() as usize)
}

/// Up to this many fields a line's keys are checked for duplicates by a scan as they arrive; past
/// it, once by sorting, so a line with a million fields costs n log n, not n².
const LINEAR_DUPLICATE_CHECK: usize = 32;

/// `Err` is the later of two equal keys among many fields.
fn check_many_fields<'a>(fields: &[(Escaped<'a>, FieldValue<Escaped<'a>>)]) -> Result<(), Escaped<'a>> {
    let mut keys: Vec<_> = fields.iter().map(|(k, _)| (k.name(), *k)).collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal keys keep their input order
    match keys.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(w[1].1),
        None => Ok(()),
    }
}

/// Whether `key` is already among `fields`. Lines carry few fields, so a scan beats hashing.
fn is_duplicate(fields: &[(Escaped<'_>, FieldValue<Escaped<'_>>)], key: &Escaped<'_>) -> bool {
    fields.iter().any(|(k, _)| cmp_names(k, key) == Ordering::Equal)
}

fn lossy(name: &Escaped<'_>) -> String {
    String::from_utf8_lossy(&name.name()).into_owned()
}
