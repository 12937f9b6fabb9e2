//! collectd's `write_http` plugin with `Format "JSON"`: `POST /collectd`, a JSON array of value
//! lists:
//!
//! ```text
//! [{"values":[0.21,0.3,0.5],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],
//!   "time":1700000000.123,"interval":10.0,"host":"web1","plugin":"load","plugin_instance":"","type":"load","type_instance":""}]
//! ```
//!
//! Mapping (docs/protocols.md): a value list is a point of the measurement named as its plugin,
//! with the tags `host`, `instance` (the plugin instance), `type` and `type_instance` (empty ones
//! left out), one float field per data source named as it (`shortterm`, `rx`, `value`), at its
//! time. Every value is a float, whatever its data-source type: with `StoreRates true` collectd
//! sends counters as rates, which are fractional, and a field must keep one type. A `null` (a NaN
//! gauge) is a value not stored. Each bad value list is refused by number; the rest are stored.

use serde::Deserialize;
use serde_json::Value;

use super::{Converted, DecodeError};
use crate::point::FieldValue;

/// One value list, as `format_json.c` writes it.
#[derive(Debug, Deserialize)]
struct ValueList {
    values: Vec<Option<f64>>,
    #[serde(default)]
    dstypes: Vec<String>,
    dsnames: Vec<String>,
    /// Seconds since the Unix epoch, with a fraction.
    time: f64,
    host: String,
    plugin: String,
    #[serde(default)]
    plugin_instance: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    type_instance: String,
}

/// Decodes a `write_http` JSON body into line protocol.
///
/// # Errors
/// [`DecodeError::Message`] when the body is not a JSON array; a bad value list in it is refused
/// alone.
pub fn decode(body: &[u8]) -> Result<Converted, DecodeError> {
    let lists: Vec<Value> = serde_json::from_slice(body).map_err(|e| DecodeError::Message {
        format: "collectd JSON (an array of value lists)",
        reason: e.to_string(),
    })?;
    let mut out = Converted::new("value list");
    for (index, list) in lists.into_iter().enumerate() {
        let number = index + 1;
        if let Err(error) = convert(&mut out, number, list) {
            out.reject(number, || error);
        }
    }
    Ok(out)
}

fn convert(out: &mut Converted, number: usize, list: Value) -> Result<(), String> {
    let list: ValueList = serde_json::from_value(list).map_err(|e| e.to_string())?;
    let name =
        || format!("{}/{}-{}/{}-{}", list.host, list.plugin, list.plugin_instance, list.kind, list.type_instance);
    if list.values.len() != list.dsnames.len() || (!list.dstypes.is_empty() && list.dstypes.len() != list.values.len())
    {
        return Err(format!(
            "{}: {} values, {} dsnames and {} dstypes: expected as many of each",
            name(),
            list.values.len(),
            list.dsnames.len(),
            list.dstypes.len()
        ));
    }
    if list.plugin.is_empty() {
        return Err(format!("{}: empty plugin", name()));
    }
    let mut fields = Vec::with_capacity(list.values.len());
    for (value, dsname) in list.values.iter().zip(&list.dsnames) {
        match value {
            Some(value) if value.is_finite() => fields.push((dsname.as_str(), FieldValue::Float(*value))),
            Some(value) => return Err(format!("{}: `{dsname}` is {value} (cannot be stored)", name())),
            None => {}
        }
    }
    if fields.is_empty() {
        out.skipped += 1;
        return Ok(());
    }
    if !list.time.is_finite() || list.time < 0.0 || list.time >= i64::MAX as f64 / 1e9 {
        return Err(format!("{}: time {} is not a time in seconds since 1970", name(), list.time));
    }
    // An f64 of today's seconds resolves about 0.2 µs: the fraction is rounded to microseconds
    // (collectd writes milliseconds), so `.125` is 125 ms exactly, not 124.999936.
    let seconds = list.time.trunc();
    let time = seconds as i64 * 1_000_000_000 + ((list.time - seconds) * 1e6).round() as i64 * 1000;
    // In key order, as points need them; empty ones are absent.
    let tags = [
        ("host", list.host.as_str()),
        ("instance", list.plugin_instance.as_str()),
        ("type", list.kind.as_str()),
        ("type_instance", list.type_instance.as_str()),
    ];
    out.point(number, &list.plugin, tags.into_iter().filter(|(_, v)| !v.is_empty()), fields, Some(time));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(converted: &Converted) -> String {
        String::from_utf8(converted.lines.clone()).unwrap()
    }

    #[test]
    fn value_lists_become_points_of_their_plugin() {
        let body = br#"[
            {"values":[0.21,0.3,0.5],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],
             "time":1700000000.125,"interval":10.0,"host":"web1","plugin":"load","plugin_instance":"","type":"load","type_instance":""},
            {"values":[1901474177,12],"dstypes":["derive","derive"],"dsnames":["rx","tx"],
             "time":1700000000,"interval":10.0,"host":"web1","plugin":"interface","plugin_instance":"eth0","type":"if_octets","type_instance":""},
            {"values":[null],"dstypes":["gauge"],"dsnames":["value"],
             "time":1700000000,"interval":10.0,"host":"web1","plugin":"cpu","plugin_instance":"0","type":"percent","type_instance":"idle"}
        ]"#;
        let converted = decode(body).unwrap();
        assert_eq!(
            lines(&converted),
            "load,host=web1,type=load shortterm=0.21,midterm=0.3,longterm=0.5 1700000000125000000\n\
             interface,host=web1,instance=eth0,type=if_octets rx=1901474177.0,tx=12.0 1700000000000000000\n"
        );
        assert_eq!((converted.error_count, converted.skipped), (0, 1));
    }

    #[test]
    fn bad_value_lists_are_refused_by_number_and_the_rest_kept() {
        let good = r#"{"values":[1],"dsnames":["value"],"time":1,"host":"h","plugin":"p","type":"t"}"#;
        let body = format!(
            r#"[{good}, {{"values":[1,2],"dsnames":["value"],"time":1,"host":"h","plugin":"p","type":"t"}},
                {{"values":[1],"dsnames":["value"],"time":-5,"host":"h","plugin":"p","type":"t"}},
                {{"values":["x"],"dsnames":["value"],"time":1,"host":"h","plugin":"p","type":"t"}},
                {{"values":[1],"dsnames":["value"],"time":1,"host":"h","plugin":"","type":"t"}}]"#
        );
        let converted = decode(body.as_bytes()).unwrap();
        assert_eq!(lines(&converted), "p,host=h,type=t value=1.0 1000000000\n");
        assert_eq!(converted.error_count, 4);
        assert!(
            converted.errors[0].starts_with("value list 2: h/p-/t-: 2 values, 1 dsnames"),
            "{:?}",
            converted.errors
        );
        assert!(converted.errors[1].contains("time -5 is not a time"), "{:?}", converted.errors);
        assert!(converted.errors[2].starts_with("value list 4: invalid type: string"), "{:?}", converted.errors);
        assert!(converted.errors[3].contains("empty plugin"), "{:?}", converted.errors);
        assert!(decode(b"{\"values\":[]}").unwrap_err().to_string().starts_with("invalid collectd JSON"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Any bytes: an error, or one point or one refusal or one skip per value list; never a panic.
        #[test]
        fn any_body_decodes_or_is_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(converted) = decode(&bytes) {
                let lines = converted.lines.iter().filter(|&&b| b == b'\n').count();
                proptest::prop_assert_eq!(lines, converted.sources.len());
            }
        }

        /// Value lists with any text and numbers: each is stored or refused, never lost silently.
        #[test]
        fn every_value_list_is_accounted_for(
            lists in proptest::collection::vec(("[a-z=, \\\\\"]{0,6}", proptest::num::f64::ANY, -1e10f64..1e10), 0..8)
        ) {
            let body: Vec<_> = lists.iter().map(|(name, value, time)| serde_json::json!({
                "values": [value], "dsnames": [name], "time": time, "host": name, "plugin": name, "type": name,
            })).collect();
            let converted = decode(serde_json::to_string(&body).unwrap().as_bytes()).unwrap();
            proptest::prop_assert_eq!(converted.sources.len() + converted.error_count + converted.skipped, lists.len());
        }
    }
}
