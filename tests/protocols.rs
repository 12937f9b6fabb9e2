//! The protocols beside line protocol, through the real binary: what they store, and that bad
//! bodies get a clear error without disturbing the next client. The real agents' own tests are in
//! `prometheus.rs`, `otlp.rs`, `collectd.rs` and `statsd.rs`.

use std::io::Write as _;
use std::time::Duration;

use augur_suite::{http, http_with, raw_rows, AugurServer, TempDir};

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

fn snappy(body: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(body).unwrap()
}

/// A good line-protocol write still goes through: a bad body disturbed nobody.
fn others_still_write(server: &AugurServer) {
    let (status, body) = http(server.http, "POST", "/write", b"canary v=1\n");
    assert_eq!(status, 204, "{body}");
}

#[test]
fn json_lines_store_good_lines_and_name_bad_ones() {
    let server = AugurServer::start(&[]);
    let body = concat!(
        r#"{"measurement":"cpu","tags":{"host":"a","region":"eu"},"fields":{"usage":0.5,"cores":{"int":8}},"time":1700000000000}"#,
        "\n",
        r#"{"measurement":"cpu","tags":{"host":"b","region":"eu"},"fields":{"usage":"high"},"time":1700000000000}"#,
        "\n",
        r#"{"measurement":"cpu","tags":{"host":"c"},"fields":{"usage":[1]}}"#,
        "\n",
        r#"{"measurement":"cpu","tags":{"host":"d","region":"eu"},"fields":{"usage":0.7},"time":4102444800000}"#,
        "\n",
    );
    let (status, reply) = http(server.http, "POST", "/api/v1/points?precision=ms", body.as_bytes());
    assert_eq!(status, 400, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    // Line 2's string field conflicts with line 1's float only in storage, not here: both are
    // well-formed points. Line 3 is not; line 4 is too far in the future for the parser.
    assert_eq!(reply["accepted_points"], 2, "{reply}");
    assert_eq!(reply["rejected"], 2, "{reply}");
    let errors: Vec<&str> = reply["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(errors[0].starts_with("line 3: field `usage`: expected a number"), "{errors:?}");
    assert!(errors[1].starts_with("line 4: ") && errors[1].contains("future"), "{errors:?}");

    let gzipped = gzip(br#"{"measurement":"cpu","tags":{"host":"e","region":"eu"},"fields":{"usage":0.9}}"#);
    let (status, reply) = http_with(server.http, "POST", "/api/v1/points", &[("Content-Encoding", "gzip")], &gzipped);
    assert_eq!(status, 204, "{reply}");
    let (status, reply) = http(server.http, "POST", "/api/v1/points?precision=fortnights", b"");
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("invalid precision `fortnights`"), "{reply}");
    let (status, reply) =
        http_with(server.http, "POST", "/api/v1/points", &[("Content-Type", "application/x-protobuf")], b"x");
    assert_eq!(status, 415, "{reply}");
    assert!(reply.contains("not accepted by JSON lines"), "{reply}");
    others_still_write(&server);

    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());
    let mut rows = raw_rows(&data.0, "cpu");
    rows.sort_by(|a, b| a["host"].as_str().cmp(&b["host"].as_str()));
    let hosts: Vec<&str> = rows.iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["a", "b", "e"]);
    assert_eq!((rows[0]["usage"].as_f64(), rows[0]["cores"].as_i64()), (Some(0.5), Some(8)));
    assert_eq!(rows[0]["time"], 1_700_000_000_000_000_000_i64);
    assert_eq!(rows[0]["region"], "eu");
}

#[test]
fn bad_remote_write_bodies_get_clear_errors() {
    let server = AugurServer::start_with_env(&[], &[("AUGUR_HTTP__MAX_BODY_BYTES", "1048576")]);
    let post = |body: &[u8]| http_with(server.http, "POST", "/api/v1/write", &[("Content-Encoding", "snappy")], body);

    let (status, reply) = post(b"\xff\xff\xff\xff\xff\x01not snappy");
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("invalid snappy body"), "{reply}");
    // A series (field 1, 10 bytes long) cut after 3 bytes.
    let (status, reply) = post(&snappy(b"\x0a\x0a\x0a\x03"));
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("invalid protobuf WriteRequest"), "{reply}");
    // 4 MiB of zeros compress to little; the limit applies to what they decompress to.
    let (status, reply) = post(&snappy(&vec![0; 4 << 20]));
    assert_eq!(status, 413, "{reply}");
    assert!(reply.contains("after decompression"), "{reply}");
    let (status, reply) = http_with(server.http, "POST", "/api/v1/write", &[("Content-Encoding", "gzip")], b"x");
    assert_eq!(status, 415, "{reply}");
    assert!(reply.contains("Content-Encoding `gzip` is not accepted by Prometheus remote write"), "{reply}");
    // A sample that cannot be stored: refused by series, the rest stored. Series: labels
    // {__name__="up"}, samples (+Inf at 1 ms) and (1.0 at 2 ms).
    let mut series = vec![0x0a, 0x0e, 0x0a, 0x08];
    series.extend_from_slice(b"__name__");
    series.extend_from_slice(&[0x12, 0x02]);
    series.extend_from_slice(b"up");
    for (value, ms) in [(f64::INFINITY, 1u8), (1.0, 2)] {
        series.extend_from_slice(&[0x12, 0x0b, 0x09]);
        series.extend_from_slice(&value.to_le_bytes());
        series.extend_from_slice(&[0x10, ms]);
    }
    let mut request = vec![0x0a, u8::try_from(series.len()).unwrap()];
    request.extend_from_slice(&series);
    let (status, reply) = post(&snappy(&request));
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains(r#"series 1: {__name__=\"up\"}: sample at 1 ms is inf"#), "{reply}");
    assert!(reply.contains("1 point(s) stored"), "{reply}");
    others_still_write(&server);

    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());
    let rows = raw_rows(&data.0, "up");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["value"].as_f64(), rows[0]["time"].as_i64()), (Some(1.0), Some(2_000_000)));
}

#[test]
fn otlp_answers_as_its_spec_requires() {
    let server = AugurServer::start(&[]);
    let json = [("Content-Type", "application/json")];
    // OTLP/JSON as the spec writes it: one good data point, one that cannot be stored.
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"web1"}}]},
      "scopeMetrics":[{"metrics":[{"name":"temp","gauge":{"dataPoints":[
        {"asDouble":21.5,"timeUnixNano":"1700000000000000000"},{"asDouble":"NaN","timeUnixNano":"1700000000000000000"}]}}]}]}]}"#;
    let (status, reply) = http_with(server.http, "POST", "/v1/metrics", &json, body.as_bytes());
    // A partial success is a 200 (OTLP clients would otherwise send the stored point again).
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["partialSuccess"]["rejectedDataPoints"], "1", "{reply}");
    let message = reply["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("metric 1: `temp`, data point 2: `value` is NaN"), "{message}");
    let gzipped = gzip(body.replace(r#""NaN""#, "22.5").as_bytes());
    let (status, reply) = http_with(
        server.http,
        "POST",
        "/v1/metrics",
        &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        &gzipped,
    );
    assert_eq!((status, reply.as_str()), (200, "{}"));
    // Errors are google.rpc.Status messages in the request's encoding.
    let (status, reply) = http_with(server.http, "POST", "/v1/metrics", &json, b"{\"resourceMetrics\": 5}");
    assert_eq!(status, 400, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["code"], 3, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("invalid OTLP/JSON"), "{reply}");
    let protobuf = [("Content-Type", "application/x-protobuf")];
    let (status, reply) = http_with(server.http, "POST", "/v1/metrics", &protobuf, b"\x0a\x0a\x0a\x03");
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("invalid protobuf ExportMetricsServiceRequest"), "{reply}");
    let (status, reply) = http_with(server.http, "POST", "/v1/metrics", &[("Content-Type", "text/plain")], b"x");
    assert_eq!(status, 415, "{reply}");
    assert!(reply.contains("not accepted by OTLP/HTTP metrics"), "{reply}");
    others_still_write(&server);

    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());
    let mut values: Vec<f64> = raw_rows(&data.0, "temp").iter().map(|r| r["value"].as_f64().unwrap()).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [21.5, 21.5, 22.5]);
}

#[test]
fn collectd_value_lists_are_stored_and_bad_ones_named() {
    let server = AugurServer::start(&[]);
    let body = r#"[{"values":[0.5,0.25,0.125],"dstypes":["gauge","gauge","gauge"],"dsnames":["shortterm","midterm","longterm"],
        "time":1700000000.25,"interval":10.0,"host":"web1","plugin":"load","plugin_instance":"","type":"load","type_instance":""},
      {"values":[1],"dsnames":["value"],"time":"soon","host":"web1","plugin":"load","type":"load"}]"#;
    let (status, reply) =
        http_with(server.http, "POST", "/collectd", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("value list 2: invalid type: string"), "{reply}");
    assert!(reply.contains("1 point(s) stored"), "{reply}");
    let (status, reply) = http(server.http, "POST", "/collectd", b"[{");
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("invalid collectd JSON"), "{reply}");
    others_still_write(&server);

    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());
    let rows = raw_rows(&data.0, "load");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["shortterm"].as_f64(), rows[0]["longterm"].as_f64()), (Some(0.5), Some(0.125)));
    assert_eq!((rows[0]["host"].as_str(), rows[0]["type"].as_str()), (Some("web1"), Some("load")));
    assert_eq!(rows[0]["time"], 1_700_000_000_250_000_000_i64);
}
