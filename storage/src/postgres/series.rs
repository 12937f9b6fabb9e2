//! The tags of a series, read back from its canonical key (`measurement,k1=v1,k2=v2`, every `,`,
//! `=`, space and `\` in a name escaped with `\`; see `augur_ingest::series`).

use serde_json::{Map, Value};

/// The tags of `series_key` as a JSON object text, e.g. `{"host":"a","region":"eu"}`.
pub fn tags_json(series_key: &str) -> String {
    let tags: Map<String, Value> = tags(series_key).into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    Value::Object(tags).to_string()
}

/// The tags of `series_key`, unescaped, in key order.
pub fn tags(series_key: &str) -> Vec<(String, String)> {
    let mut tags = Vec::new();
    let mut parts = split_unescaped(series_key, ',').into_iter();
    parts.next(); // the measurement
    for part in parts {
        let mut key_value = split_unescaped(&part, '=').into_iter();
        let (Some(key), Some(value)) = (key_value.next(), key_value.next()) else { continue };
        tags.push((unescape(&key), unescape(&value)));
    }
    tags
}

/// `text` split at every `separator` not preceded by an escaping `\`; parts stay escaped.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == separator {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
        if c == '\\' {
            current.extend(chars.next());
        }
    }
    parts.push(current);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_separators_stay_inside_names_and_values() {
        assert_eq!(tags_json("cpu"), "{}");
        assert_eq!(tags_json(r"cpu,host=a,region=eu"), r#"{"host":"a","region":"eu"}"#);
        assert_eq!(
            tags_json(r"my\,cpu,a\=b=c\,d,q=x\ y\\,z='; DROP TABLE series; --"),
            r#"{"a=b":"c,d","q":"x y\\","z":"'; DROP TABLE series; --"}"#
        );
    }
}
