//! JSON lines: `POST /api/v1/points`, one JSON object per line (docs/protocols.md):
//!
//! ```text
//! {"measurement": "cpu", "tags": {"host": "web1", "region": "eu"}, "fields": {"usage": 0.5, "cores": {"int": 8}}, "time": 1700000000000000000}
//! ```
//!
//! `tags` (strings) is optional; `fields` needs at least one field. A JSON number is a float, as a
//! bare number is in line protocol: JSON cannot tell `1` from `1.0` once a client library has
//! serialized it, so a field's type would flip between points. Integers are `{"int": n}` and
//! `{"uint": n}`. `time` is optional (the server's clock): an integer in the request's precision
//! (`?precision=ns|us|ms|s`, ns by default) or an RFC 3339 string. Unknown keys are errors, so a
//! misspelt `feilds` is not silently dropped. Each bad line is refused by number; the rest are
//! stored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Converted, Request};
use crate::point::FieldValue;

/// One line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPoint {
    measurement: String,
    #[serde(default)]
    tags: BTreeMap<String, Value>,
    fields: BTreeMap<String, Value>,
    #[serde(default)]
    time: Option<Value>,
}

/// Decodes a body of JSON lines into line protocol. Never fails as a whole: each bad line is
/// refused alone.
pub fn decode(body: &[u8], request: &Request<'_>) -> Converted {
    let mut out = Converted::new("line");
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(error) = convert_line(&mut out, number, line, request) {
            out.reject(number, || error);
        }
    }
    out
}

fn convert_line(out: &mut Converted, number: usize, line: &[u8], request: &Request<'_>) -> Result<(), String> {
    let point: JsonPoint = serde_json::from_slice(line).map_err(|e| {
        // serde_json says "at line 1 column N"; within one line only the column means anything.
        let text = e.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text).to_owned();
        format!("{reason} (column {})", e.column())
    })?;
    let mut tags = Vec::with_capacity(point.tags.len());
    for (key, value) in &point.tags {
        let Value::String(value) = value else {
            return Err(format!("tag `{key}`: expected a string, got {value}"));
        };
        tags.push((key.as_str(), value.as_str()));
    }
    if point.fields.is_empty() {
        return Err("`fields` is empty: a point needs at least one field".into());
    }
    let mut fields = Vec::with_capacity(point.fields.len());
    for (key, value) in &point.fields {
        fields.push((key.as_str(), field_value(value).map_err(|e| format!("field `{key}`: {e}"))?));
    }
    let time = point.time.as_ref().map(|t| timestamp(t, request)).transpose()?;
    out.point(number, &point.measurement, tags, fields, time);
    Ok(())
}

fn field_value(value: &Value) -> Result<FieldValue<&str>, String> {
    const EXPECTED: &str = r#"expected a number, a string, a boolean, {"int": n} or {"uint": n}"#;
    Ok(match value {
        Value::Number(n) => FieldValue::Float(n.as_f64().ok_or_else(|| format!("{n} is not a float"))?),
        Value::String(s) => FieldValue::String(s),
        Value::Bool(b) => FieldValue::Boolean(*b),
        Value::Object(object) if object.len() == 1 => match object.iter().next() {
            Some((kind, Value::Number(n))) if kind == "int" => {
                FieldValue::Integer(n.as_i64().ok_or_else(|| format!("{n} is not a 64-bit signed integer"))?)
            }
            Some((kind, Value::Number(n))) if kind == "uint" => {
                FieldValue::Unsigned(n.as_u64().ok_or_else(|| format!("{n} is not a 64-bit unsigned integer"))?)
            }
            _ => return Err(format!("{EXPECTED}, got {value}")),
        },
        _ => return Err(format!("{EXPECTED}, got {value}")),
    })
}

/// `time` in nanoseconds.
fn timestamp(time: &Value, request: &Request<'_>) -> Result<i64, String> {
    match time {
        Value::Number(n) => n
            .as_i64()
            .and_then(|t| t.checked_mul(request.precision.nanos_per_unit()))
            .ok_or_else(|| format!("`time` {n} is not an integer in range at precision {}", request.precision)),
        Value::String(s) => {
            let at = humantime_serde::re::humantime::parse_rfc3339_weak(s)
                .map_err(|e| format!("`time` {s:?} is not an RFC 3339 time ({e})"))?;
            let since = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("`time` {s:?} is before 1970"))?;
            i64::try_from(since.as_nanos()).map_err(|_| format!("`time` {s:?} is out of range"))
        }
        other => Err(format!("`time`: expected an integer or an RFC 3339 string, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::Precision;

    fn lines(body: &str, precision: Precision) -> Converted {
        decode(
            body.as_bytes(),
            &Request { content_type: "", limit: 1 << 20, precision, otlp: &crate::config::OtlpConfig::default() },
        )
    }

    #[test]
    fn points_become_line_protocol_and_bad_lines_are_refused_by_number() {
        let body = concat!(
            r#"{"measurement":"cpu","tags":{"region":"eu","host":"a"},"fields":{"usage":0.5,"cores":{"int":8},"up":true,"state":"ok","n":{"uint":7}},"time":1700000000}"#,
            "\n\n",
            r#"{"measurement":"cpu","fields":{"usage":1},"time":"2023-11-14T22:13:20Z"}"#,
            "\r\n",
            r#"{"measurement":"cpu","feilds":{"usage":1}}"#,
            "\n",
            r#"{"measurement":"cpu","tags":{"host":5},"fields":{"usage":1}}"#,
            "\n",
            r#"{"measurement":"cpu","fields":{"usage":null}}"#,
            "\n",
            r#"{"measurement":"cpu","fields":{"usage":1},"time":"yesterday"}"#,
            "\n",
            r#"{"measurement":"cpu","fields":{}}"#,
            "\n{not json\n",
        );
        let converted = lines(body, Precision::Seconds);
        assert_eq!(
            String::from_utf8(converted.lines.clone()).unwrap(),
            "cpu,host=a,region=eu cores=8i,n=7u,state=\"ok\",up=true,usage=0.5 1700000000000000000\n\
             cpu usage=1.0 1700000000000000000\n"
        );
        let errors = &converted.errors;
        assert_eq!(converted.error_count, 6, "{errors:?}");
        assert!(errors[0].starts_with("line 4: unknown field `feilds`"), "{errors:?}");
        assert_eq!(errors[1], "line 5: tag `host`: expected a string, got 5");
        assert!(errors[2].starts_with("line 6: field `usage`: expected a number"), "{errors:?}");
        assert!(errors[3].starts_with("line 7: `time` \"yesterday\" is not an RFC 3339 time"), "{errors:?}");
        assert!(errors[4].starts_with("line 8: `fields` is empty"), "{errors:?}");
        assert!(errors[5].starts_with("line 9: key must be a string"), "{errors:?}");
        // A point the line-protocol parser refuses later is named by its JSON line.
        assert!(converted.describe(2, &"too far").starts_with("line 3: too far (as line protocol: `cpu usage=1.0"));
    }

    #[test]
    fn out_of_range_times_are_refused_not_wrapped() {
        let converted = lines(r#"{"measurement":"m","fields":{"v":1},"time":9223372036854775}"#, Precision::Seconds);
        assert_eq!(converted.error_count, 1);
        assert!(converted.errors[0].contains("not an integer in range at precision s"), "{:?}", converted.errors);
    }

    /// A JSON line as a client library would write it.
    fn json_point() -> impl proptest::strategy::Strategy<Value = (serde_json::Value, String)> {
        use proptest::prelude::*;
        let name = "[a-zA-Z_][a-zA-Z0-9_ .,=\\\\\"-]{0,12}";
        (name, proptest::collection::btree_map(name, name, 0..4), name, -1e12f64..1e12, 0i64..2_000_000_000_000)
            .prop_map(|(measurement, tags, field, value, time)| {
                let point = serde_json::json!({
                    "measurement": measurement, "tags": tags, "fields": { field.clone(): value }, "time": time
                });
                (point, field)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Any bytes: no panic, and each non-blank line is a point or one error naming it.
        #[test]
        fn any_body_gives_a_point_or_an_error_per_line(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let converted = lines(&String::from_utf8_lossy(&body), Precision::Nanoseconds);
            let items = body.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
            proptest::prop_assert_eq!(converted.sources.len() + converted.error_count, items);
        }

        /// What a client writes is what the line-protocol parser reads back.
        #[test]
        fn points_round_trip_through_line_protocol((point, field) in json_point()) {
            let converted = lines(&format!("{point}\n"), Precision::Milliseconds);
            let mut parser = crate::line_protocol::Parser::new(&converted.lines, Precision::Nanoseconds, 0, 1);
            match parser.next() {
                Some(Ok(line)) => {
                    let owned = line.to_point();
                    proptest::prop_assert_eq!(&owned.measurement, point["measurement"].as_str().unwrap());
                    proptest::prop_assert_eq!(owned.time, point["time"].as_i64().unwrap() * 1_000_000);
                    let tags: BTreeMap<String, String> = owned.tags.iter().cloned().collect();
                    let sent: BTreeMap<String, String> = serde_json::from_value(point["tags"].clone()).unwrap();
                    proptest::prop_assert_eq!(tags, sent);
                    proptest::prop_assert_eq!(&owned.fields[0].0, &field);
                    proptest::prop_assert_eq!(owned.fields[0].1.clone(), FieldValue::Float(point["fields"][&field].as_f64().unwrap()));
                }
                // Empty names and tag values are refused by the parser, as in line protocol.
                Some(Err(error)) => proptest::prop_assert!(
                    point["measurement"] == "" || field.is_empty() || point["tags"].as_object().unwrap().iter().any(|(k, v)| k.is_empty() || v == ""),
                    "{error} for {point}"
                ),
                None => proptest::prop_assert!(false, "no line for {point}: {:?}", converted.errors),
            }
        }
    }
}
