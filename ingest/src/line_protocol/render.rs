//! Rendering points back to line protocol, with the canonical escaping also used for series keys.

use std::fmt::Write;

use crate::point::{FieldValue, Point};
use crate::series::canonical_key_into;

/// Appends `name` escaped as a measurement: `,`, space and `\` get a backslash.
pub fn escape_measurement_into(name: &str, out: &mut Vec<u8>) {
    escape_into(name, out, |c| matches!(c, b',' | b' ' | b'\\'));
}

/// Appends `name` escaped as a tag key, tag value or field key: `,`, `=`, space and `\` get a
/// backslash.
pub fn escape_name_into(name: &str, out: &mut Vec<u8>) {
    escape_into(name, out, |c| matches!(c, b',' | b'=' | b' ' | b'\\'));
}

/// Appends `value` escaped as the inside of a string field value: `"` and `\` get a backslash.
pub fn escape_string_into(value: &str, out: &mut Vec<u8>) {
    escape_into(value, out, |c| matches!(c, b'"' | b'\\'));
}

fn escape_into(text: &str, out: &mut Vec<u8>, needs_escape: impl Fn(u8) -> bool) {
    for &b in text.as_bytes() {
        if needs_escape(b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends one point as a line of line protocol (with a trailing newline). Tags are written in the
/// order given; `time` in nanoseconds.
pub fn render_point<'a>(
    out: &mut Vec<u8>,
    measurement: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    fields: impl IntoIterator<Item = (&'a str, FieldValue<&'a str>)>,
    time: Option<i64>,
) {
    // With tags in key order, the measurement and tags are the series key.
    canonical_key_into(measurement, tags, out);
    let mut separator = b' ';
    for (key, value) in fields {
        out.push(separator);
        separator = b',';
        escape_name_into(key, out);
        out.push(b'=');
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = match value {
            // `{:?}` prints the shortest text that parses back to the same f64.
            FieldValue::Float(v) => write!(text, "{v:?}"),
            FieldValue::Integer(v) => write!(text, "{v}i"),
            FieldValue::Unsigned(v) => write!(text, "{v}u"),
            FieldValue::Boolean(v) => write!(text, "{v}"),
            FieldValue::String(s) => {
                out.push(b'"');
                escape_string_into(s, out);
                out.push(b'"');
                Ok(())
            }
        };
        out.extend_from_slice(text.as_bytes());
    }
    if let Some(time) = time {
        out.push(b' ');
        out.extend_from_slice(time.to_string().as_bytes());
    }
    out.push(b'\n');
}

/// Appends owned points as lines of line protocol, each with its timestamp.
pub fn render_points(points: &[Point], out: &mut Vec<u8>) {
    for p in points {
        render_point(
            out,
            &p.measurement,
            p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            p.fields.iter().map(|(k, v)| (k.as_str(), v.as_ref())),
            Some(p.time),
        );
    }
}
