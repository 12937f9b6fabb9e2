//! The wire formats loadgen renders a [`Fleet`]'s points in: line protocol, JSON lines, Prometheus
//! remote write, OTLP/HTTP protobuf, collectd `write_http` JSON and tagged Graphite plaintext.
//!
//! Each format precomputes what repeats (a host's tags, a field's key) once per fleet, so a batch
//! costs little more than copying bytes and formatting numbers: the load generator shares the
//! cores with the server it measures. The protobuf formats are written field by field with
//! `prost`'s varint helpers for the same reason (building `prost` messages would allocate a
//! string per label per sample); the tests decode every format with Augur's own decoders.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use super::tsbs::Fleet;

/// The measurement every format's points belong to (or name their metrics after).
const MEASUREMENT: &str = "cpu";

/// The payload of one load connection's requests or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// InfluxDB line protocol.
    LineProtocol,
    /// Augur's JSON lines (`POST /api/v1/points`).
    JsonLines,
    /// A snappy-compressed remote-write `WriteRequest`: one series per (host, field).
    Prometheus,
    /// An OTLP `ExportMetricsServiceRequest`: one resource per point, one gauge per field.
    Otlp,
    /// A JSON array of collectd value lists: one per point, a data source per field.
    Collectd,
    /// Tagged Graphite plaintext: one line per field.
    Graphite,
}

/// Renders batches of a fleet's points in one format.
#[derive(Debug)]
pub struct Renderer {
    fleet: Fleet,
    format: Format,
    /// Per host, what precedes its values: the line-protocol series key, the JSON line up to its
    /// fields, the encoded remote-write labels, the encoded OTLP resource, the collectd host, the
    /// Graphite tags.
    host_parts: Vec<Vec<u8>>,
    /// Per field, its key in the format.
    field_parts: Vec<Vec<u8>>,
    /// The remote-write message before snappy; an OTLP resource's metrics before their length.
    scratch: Vec<u8>,
}

impl Renderer {
    /// Precomputes `format`'s per-host and per-field parts for `fleet`.
    pub fn new(format: Format, fleet: Fleet) -> Self {
        let host_parts = (0..fleet.hosts()).map(|host| host_part(format, fleet.tags(host))).collect();
        let field_parts =
            fleet.field_names().iter().enumerate().map(|(i, name)| field_part(format, i == 0, name)).collect();
        Self { fleet, format, host_parts, field_parts, scratch: Vec::new() }
    }

    /// Field values per point.
    pub fn fields(&self) -> usize {
        self.fleet.fields()
    }

    /// Writes a batch of `points` points at `time` (ns since the epoch) into `out` (cleared first).
    pub fn batch(&mut self, points: usize, time: i64, out: &mut Vec<u8>) {
        out.clear();
        let Self { fleet, format, host_parts, field_parts, scratch } = self;
        let time = time.max(0) as u64;
        if *format == Format::Collectd {
            out.push(b'[');
        }
        if *format == Format::Prometheus {
            scratch.clear();
        }
        for i in 0..points {
            let (host, tenths) = fleet.next_point();
            let host = &host_parts[host];
            let point = Point { host, fields: field_parts, tenths, time };
            match format {
                Format::LineProtocol => point.line(b" ", b"\n", out),
                Format::JsonLines => point.line(b"},\"time\":", b"}\n", out),
                Format::Prometheus => point.remote_write_series(scratch),
                Format::Otlp => point.otlp_resource(scratch, out),
                Format::Collectd => {
                    if i > 0 {
                        out.push(b',');
                    }
                    point.collectd_value_list(out);
                }
                Format::Graphite => point.graphite_lines(out),
            }
        }
        match format {
            Format::Collectd => out.push(b']'),
            Format::Prometheus => {
                out.resize(snap::raw::max_compress_len(scratch.len()), 0);
                // Compressing into a buffer of `max_compress_len` bytes cannot fail.
                let written = snap::raw::Encoder::new().compress(scratch, out).unwrap_or(0);
                out.truncate(written);
            }
            _ => {}
        }
    }
}

/// One point being rendered, with its host's and the fields' precomputed parts.
struct Point<'a> {
    host: &'a [u8],
    fields: &'a [Vec<u8>],
    tenths: &'a [u16],
    time: u64,
}

impl Point<'_> {
    fn values(&self) -> impl Iterator<Item = (&[u8], u16)> {
        self.fields.iter().map(Vec::as_slice).zip(self.tenths.iter().copied())
    }

    /// A line of line protocol (`cpu,tags usage_user=1.5,... <ns>`, `before_time` ` `) or of JSON
    /// lines (`{"measurement":"cpu","tags":{...},"fields":{"usage_user":1.5,...},"time":<ns>}`,
    /// `before_time` `},"time":`): the host's part, the fields, the time in ns.
    fn line(&self, before_time: &[u8], end: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(self.host);
        for (key, value) in self.values() {
            out.extend_from_slice(key);
            push_tenths(out, value);
        }
        out.extend_from_slice(before_time);
        push_u64(out, self.time);
        out.extend_from_slice(end);
    }

    /// One `TimeSeries { labels, samples: [Sample { value, timestamp }] }` per field.
    fn remote_write_series(&self, out: &mut Vec<u8>) {
        let millis = self.time / 1_000_000;
        let sample_len = 1 + 8 + 1 + encoded_len_varint(millis);
        for (name_label, value) in self.values() {
            let series_len =
                name_label.len() + self.host.len() + 1 + encoded_len_varint(sample_len as u64) + sample_len;
            length_delimited(1, series_len, out);
            out.extend_from_slice(name_label);
            out.extend_from_slice(self.host);
            length_delimited(2, sample_len, out);
            fixed64(1, tenths_as_f64(value).to_bits(), out);
            encode_key(2, WireType::Varint, out);
            encode_varint(millis, out);
        }
    }

    /// `ResourceMetrics { resource, scope_metrics: [ScopeMetrics { metrics }] }` with one
    /// `Metric { name, gauge: Gauge { data_points: [NumberDataPoint { time, as_double }] } }` per
    /// field; `metrics` is built in `scratch` first, its length being needed before it.
    fn otlp_resource(&self, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
        const POINT_LEN: usize = 2 * (1 + 8);
        const GAUGE_LEN: usize = 2 + POINT_LEN;
        scratch.clear();
        for (name, value) in self.values() {
            length_delimited(2, name.len() + 2 + GAUGE_LEN, scratch);
            scratch.extend_from_slice(name);
            length_delimited(5, GAUGE_LEN, scratch);
            length_delimited(1, POINT_LEN, scratch);
            fixed64(3, self.time, scratch);
            fixed64(4, tenths_as_f64(value).to_bits(), scratch);
        }
        let scope_len = scratch.len();
        length_delimited(1, self.host.len() + 1 + encoded_len_varint(scope_len as u64) + scope_len, out);
        out.extend_from_slice(self.host);
        length_delimited(2, scope_len, out);
        out.extend_from_slice(scratch);
    }

    /// `{"values":[...],"dstypes":["gauge",...],"dsnames":[...],"time":<s>,"host":...}`
    fn collectd_value_list(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"values\":[");
        for (i, value) in self.tenths.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_tenths(out, *value);
        }
        out.extend_from_slice(b"],\"dstypes\":[");
        for i in 0..self.tenths.len() {
            out.extend_from_slice(if i > 0 { b",\"gauge\"" } else { b"\"gauge\"" });
        }
        out.extend_from_slice(b"],\"dsnames\":[");
        for key in self.fields {
            out.extend_from_slice(key);
        }
        out.extend_from_slice(b"],\"time\":");
        push_seconds(out, self.time);
        out.extend_from_slice(b",\"interval\":10.000,\"host\":\"");
        out.extend_from_slice(self.host);
        out.extend_from_slice(
            b"\",\"plugin\":\"cpu\",\"plugin_instance\":\"\",\"type\":\"cpu\",\"type_instance\":\"\"}",
        );
    }

    /// `cpu.usage_user;arch=x64;... 1.5 <s>` per field.
    fn graphite_lines(&self, out: &mut Vec<u8>) {
        for (path, value) in self.values() {
            out.extend_from_slice(path);
            out.extend_from_slice(self.host);
            out.push(b' ');
            push_tenths(out, value);
            out.push(b' ');
            push_seconds(out, self.time);
            out.push(b'\n');
        }
    }
}

/// What precedes a host's values in `format`.
fn host_part(format: Format, tags: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::LineProtocol => {
            out.extend_from_slice(MEASUREMENT.as_bytes());
            for (key, value) in tags {
                out.extend_from_slice(format!(",{key}={value}").as_bytes());
            }
        }
        Format::JsonLines => {
            let tags: serde_json::Map<String, serde_json::Value> =
                tags.iter().map(|(k, v)| ((*k).to_owned(), v.as_str().into())).collect();
            let head = serde_json::json!({ "measurement": MEASUREMENT, "tags": tags }).to_string();
            // `{"measurement":...,"tags":{...}` and the opening of the fields.
            out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            out.extend_from_slice(b",\"fields\":{");
        }
        Format::Prometheus => {
            for (key, value) in tags {
                label(key, value, &mut out);
            }
        }
        Format::Otlp => {
            // `Resource { attributes: [KeyValue { key, value: AnyValue { string_value } }] }`,
            // named as the OpenTelemetry semantic conventions name them.
            let mut attributes = Vec::new();
            for (key, value) in tags {
                let key = match *key {
                    "hostname" => "host.name",
                    "region" => "cloud.region",
                    other => other,
                };
                let any_len = 1 + encoded_len_varint(value.len() as u64) + value.len();
                length_delimited(
                    1,
                    1 + encoded_len_varint(key.len() as u64)
                        + key.len()
                        + 1
                        + encoded_len_varint(any_len as u64)
                        + any_len,
                    &mut attributes,
                );
                string(1, key, &mut attributes);
                length_delimited(2, any_len, &mut attributes);
                string(1, value, &mut attributes);
            }
            length_delimited(1, attributes.len(), &mut out);
            out.extend_from_slice(&attributes);
        }
        Format::Collectd => {
            let host = tags.iter().find(|(key, _)| *key == "hostname").map_or("", |(_, value)| value.as_str());
            out.extend_from_slice(host.as_bytes());
        }
        Format::Graphite => {
            for (key, value) in tags {
                out.extend_from_slice(format!(";{key}={value}").as_bytes());
            }
        }
    }
    out
}

/// A field's key in `format`.
fn field_part(format: Format, first: bool, name: &str) -> Vec<u8> {
    let sep = if first { "" } else { "," };
    match format {
        Format::LineProtocol => format!("{}{name}=", if first { " " } else { "," }).into_bytes(),
        Format::JsonLines => format!("{sep}\"{name}\":").into_bytes(),
        Format::Collectd => format!("{sep}\"{name}\"").into_bytes(),
        Format::Graphite => format!("{MEASUREMENT}.{name}").into_bytes(),
        Format::Prometheus => {
            let mut out = Vec::new();
            label("__name__", &format!("{MEASUREMENT}_{name}"), &mut out);
            out
        }
        Format::Otlp => {
            let mut out = Vec::new();
            string(1, &format!("{MEASUREMENT}.{name}"), &mut out);
            out
        }
    }
}

/// A remote-write `Label { name, value }` as a `TimeSeries.labels` entry.
fn label(name: &str, value: &str, out: &mut Vec<u8>) {
    let len = |s: &str| 1 + encoded_len_varint(s.len() as u64) + s.len();
    length_delimited(1, len(name) + len(value), out);
    string(1, name, out);
    string(2, value, out);
}

fn length_delimited(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn string(tag: u32, value: &str, out: &mut Vec<u8>) {
    length_delimited(tag, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

fn fixed64(tag: u32, bits: u64, out: &mut Vec<u8>) {
    encode_key(tag, WireType::SixtyFourBit, out);
    out.extend_from_slice(&bits.to_le_bytes());
}

fn tenths_as_f64(tenths: u16) -> f64 {
    f64::from(tenths) / 10.0
}

/// `12.3` from 123.
fn push_tenths(out: &mut Vec<u8>, tenths: u16) {
    push_u64(out, u64::from(tenths / 10));
    out.push(b'.');
    out.push(b'0' + (tenths % 10) as u8);
}

/// Seconds with milliseconds, `1700000000.123`, as Graphite and collectd send time.
fn push_seconds(out: &mut Vec<u8>, nanos: u64) {
    push_u64(out, nanos / 1_000_000_000);
    let millis = nanos / 1_000_000 % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
    ]);
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use augur_ingest::config::OtlpConfig;
    use augur_ingest::line_protocol::parse_points;
    use augur_ingest::protocols::{collectd, graphite, json_lines, otlp, prometheus, Converted, Request};
    use augur_ingest::{FieldValue, Precision};

    use super::*;

    /// Milliseconds: every format carries at least those.
    const TIME: i64 = 1_700_000_000_123_000_000;

    /// (host, region, field, value, time) per value, sorted: what every format must deliver alike.
    type Values = Vec<(String, String, String, String, i64)>;

    fn rendered(format: Format) -> Vec<u8> {
        let mut renderer = Renderer::new(format, Fleet::new(7, 3, 10, 0));
        let mut out = Vec::new();
        renderer.batch(50, TIME, &mut out);
        out
    }

    fn decoded(format: Format) -> Converted {
        let body = rendered(format);
        let otlp_config = OtlpConfig::default();
        let request =
            Request { content_type: "", limit: 1 << 30, precision: Precision::Nanoseconds, otlp: &otlp_config };
        match format {
            Format::LineProtocol => unreachable!("line protocol is parsed directly"),
            Format::JsonLines => json_lines::decode(&body, &request),
            Format::Prometheus => prometheus::decode(&body, 1 << 30).unwrap(),
            Format::Otlp => {
                otlp::decode(&body, &Request { content_type: "application/x-protobuf", ..request }).unwrap()
            }
            Format::Collectd => collectd::decode(&body).unwrap(),
            Format::Graphite => graphite::decode(&body, &graphite::Templates::new(&[], ".").unwrap(), 1, 0),
        }
    }

    fn values(lines: &[u8]) -> Values {
        let (points, errors) = parse_points(lines, Precision::Nanoseconds, 0);
        assert!(errors.is_empty(), "{errors:?}");
        let mut values = Vec::new();
        for point in points {
            let tag = |names: &[&str]| {
                point.tags.iter().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.clone()).unwrap_or_default()
            };
            for (field, value) in &point.fields {
                // A format with one field per metric names it in the measurement.
                let field = if field == "value" {
                    point.measurement[MEASUREMENT.len() + 1..].to_owned()
                } else {
                    field.clone()
                };
                let FieldValue::Float(value) = value else { panic!("{value:?} is not a float") };
                let time = point.time / 1_000_000 * 1_000_000;
                values.push((tag(&["hostname", "host"]), tag(&["region"]), field, format!("{value:.1}"), time));
            }
        }
        values.sort();
        values
    }

    #[test]
    fn every_format_decodes_to_the_same_values() {
        let expected = values(&rendered(Format::LineProtocol));
        assert_eq!(expected.len(), 500);
        assert_eq!(expected.iter().filter(|v| v.1 == "us-west-1").count(), 140, "hosts 1 and 4 of 7: 14 of 50 points");
        assert_eq!(expected[0].4, TIME);
        for format in [Format::JsonLines, Format::Prometheus, Format::Otlp, Format::Collectd, Format::Graphite] {
            let converted = decoded(format);
            assert!(converted.errors.is_empty(), "{format:?}: {:?}", converted.errors);
            let mut got = values(&converted.lines);
            if format == Format::Collectd {
                // collectd has no region; the values and hosts must still match.
                got.iter_mut().for_each(|v| v.1.clear());
                let mut expected = expected.clone();
                expected.iter_mut().for_each(|v| v.1.clear());
                expected.sort();
                assert_eq!(got, expected, "{format:?}");
            } else {
                assert_eq!(got, expected, "{format:?}");
            }
        }
    }

    #[test]
    fn line_protocol_tags_are_sorted_for_the_parsers_fast_path() {
        let body = rendered(Format::LineProtocol);
        let mut parser = augur_ingest::line_protocol::Parser::new(&body, Precision::Nanoseconds, 0, 1);
        while let Some(line) = parser.next() {
            assert!(line.unwrap().canonical_series().is_some());
        }
    }
}
