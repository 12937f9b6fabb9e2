use prost::Message;

use super::proto::*;
use super::*;
use crate::point::Precision;

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) }
}

fn string(key: &str, value: &str) -> KeyValue {
    attribute(key, Value::StringValue(value.into()))
}

fn number(time: u64, value: Number, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint { attributes, time_unix_nano: time, value: Some(value), flags: 0 }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string("host.name", "web1"),
                    string("cloud.region", "eu-west"),
                    string("service.name", "shop"),
                    string("telemetry.sdk.version", "1.45.2"),
                    attribute("process.pid", Value::IntValue(4242)),
                ],
            }),
            scope_metrics: vec![ScopeMetrics { metrics }],
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric { name: name.into(), data: Some(data) }
}

fn decode_with(body: &[u8], content_type: &str) -> Result<Converted, DecodeError> {
    let config = OtlpConfig::default();
    decode(body, &Request { content_type, limit: 1 << 20, precision: Precision::Nanoseconds, otlp: &config })
}

fn lines(converted: &Converted) -> Vec<String> {
    String::from_utf8(converted.lines.clone()).unwrap().lines().map(str::to_owned).collect()
}

const T: u64 = 1_700_000_000_000_000_000;
const TAGS: &str = "host=web1,process.pid=4242,region=eu-west,service.name=shop";

#[test]
fn gauges_and_sums_become_value_total_and_delta_tagged_points() {
    let body = request(vec![
        metric("system.memory.usage", Data::Gauge(Gauge { data_points: vec![number(T, Number::AsInt(512), vec![])] })),
        metric(
            "http.requests",
            Data::Sum(Sum {
                data_points: vec![number(
                    T,
                    Number::AsDouble(3.5),
                    vec![string("route", "/a"), string("host.name", "web2")],
                )],
                aggregation_temporality: CUMULATIVE,
                is_monotonic: true,
            }),
        ),
        metric(
            "queue.depth",
            Data::Sum(Sum {
                data_points: vec![number(T, Number::AsInt(-2), vec![])],
                aggregation_temporality: DELTA,
                is_monotonic: false,
            }),
        ),
    ])
    .encode_to_vec();
    let converted = decode_with(&body, "application/x-protobuf").unwrap();
    assert_eq!(
        lines(&converted),
        [
            format!("system.memory.usage,{TAGS} value=512i {T}"),
            // The point's own attribute wins over its resource's.
            format!("http.requests,host=web2,process.pid=4242,region=eu-west,route=/a,service.name=shop total=3.5 {T}"),
            format!("queue.depth,{TAGS},temporality=delta value=-2i {T}"),
        ]
    );
    assert_eq!(converted.error_count, 0);
}

#[test]
fn histograms_become_cumulative_buckets_and_exponential_ones_indexed_buckets() {
    let histogram = HistogramDataPoint {
        time_unix_nano: T,
        count: 6,
        sum: Some(12.5),
        bucket_counts: vec![1, 2, 0, 3],
        explicit_bounds: vec![0.5, 1.0, 5.0],
        min: Some(0.1),
        max: Some(9.0),
        ..Default::default()
    };
    let exponential = ExponentialHistogramDataPoint {
        time_unix_nano: T,
        count: 5,
        sum: Some(7.0),
        scale: 3,
        zero_count: 1,
        positive: Some(Buckets { offset: -2, bucket_counts: vec![1, 0, 2] }),
        negative: Some(Buckets { offset: 4, bucket_counts: vec![1] }),
        ..Default::default()
    };
    let summary = SummaryDataPoint {
        time_unix_nano: T,
        count: 10,
        sum: 20.0,
        quantile_values: vec![
            ValueAtQuantile { quantile: 0.5, value: 1.5 },
            ValueAtQuantile { quantile: 0.99, value: 4.0 },
        ],
        ..Default::default()
    };
    let body = request(vec![
        metric(
            "latency",
            Data::Histogram(Histogram { data_points: vec![histogram], aggregation_temporality: CUMULATIVE }),
        ),
        metric(
            "size",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![exponential],
                aggregation_temporality: DELTA,
            }),
        ),
        metric("rpc", Data::Summary(Summary { data_points: vec![summary] })),
    ])
    .encode_to_vec();
    let converted = decode_with(&body, "").unwrap();
    assert_eq!(
        lines(&converted),
        [
            format!("latency,{TAGS} count=6u,sum=12.5,min=0.1,max=9.0,le_0.5=1u,le_1=3u,le_5=3u,le_inf=6u {T}"),
            format!(
                "size,{TAGS},temporality=delta count=5u,sum=7.0,scale=3i,zero_count=1u,pos_-2=1u,pos_0=2u,neg_4=1u {T}"
            ),
            format!("rpc,{TAGS} count=10u,sum=20.0,quantile_0.5=1.5,quantile_0.99=4.0 {T}"),
        ]
    );
}

#[test]
fn bad_data_points_are_refused_by_metric_and_point_and_the_rest_kept() {
    let good = number(T, Number::AsDouble(1.0), vec![]);
    let body = request(vec![
        metric(
            "ok",
            Data::Gauge(Gauge { data_points: vec![good.clone(), number(T, Number::AsDouble(f64::NAN), vec![])] }),
        ),
        metric(
            "nosum",
            Data::Sum(Sum { data_points: vec![good.clone()], aggregation_temporality: 0, is_monotonic: true }),
        ),
        Metric { name: "empty".into(), data: None },
        metric(
            "buckets",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 1,
                    bucket_counts: vec![1],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: CUMULATIVE,
            }),
        ),
        metric(
            "gap",
            Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint { flags: NO_RECORDED_VALUE, ..Default::default() }],
            }),
        ),
        metric("far", Data::Gauge(Gauge { data_points: vec![number(u64::MAX, Number::AsInt(1), vec![])] })),
    ])
    .encode_to_vec();
    let converted = decode_with(&body, "application/x-protobuf").unwrap();
    assert_eq!(lines(&converted), [format!("ok,{TAGS} value=1.0 {T}")]);
    assert_eq!((converted.error_count, converted.skipped), (5, 1));
    let errors = &converted.errors;
    assert_eq!(errors[0], "metric 1: `ok`, data point 2: `value` is NaN (cannot be stored)");
    assert_eq!(errors[1], "metric 2: `nosum`, data point 1: the sum has no aggregation temporality");
    assert!(errors[2].starts_with("metric 3: `empty`"), "{errors:?}");
    assert!(errors[3].contains("1 bucket counts for 1 explicit bounds"), "{errors:?}");
    assert!(errors[4].contains("time_unix_nano 18446744073709551615 is out of range"), "{errors:?}");
}

#[test]
fn json_reads_as_the_otlp_spec_writes_it() {
    // As the spec's example: camelCase, 64-bit integers as strings, enums as numbers; unknown keys
    // (scope, unit, exemplars) ignored.
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"host.name","value":{"stringValue":"web1"}},
        {"key":"cores","value":{"intValue":"8"}},{"key":"up","value":{"boolValue":true}}]},
      "scopeMetrics":[{"scope":{"name":"lib","version":"1"},"metrics":[
        {"name":"requests","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,
          "dataPoints":[{"asInt":"12","timeUnixNano":"1700000000000000000","attributes":[{"key":"code","value":{"intValue":200}}]}]}},
        {"name":"temp","gauge":{"dataPoints":[{"asDouble":21.5,"timeUnixNano":1700000000000000000,"exemplars":[]}]}},
        {"name":"lat","histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA","dataPoints":[
          {"timeUnixNano":"1700000000000000000","count":"3","sum":"NaN","bucketCounts":["1","2"],"explicitBounds":[10]}]}}
      ]}]}]}"#;
    let converted = decode_with(body.as_bytes(), JSON).unwrap();
    assert_eq!(
        lines(&converted),
        [
            format!("requests,code=200,cores=8,host=web1,up=true total=12i {T}"),
            format!("temp,cores=8,host=web1,up=true value=21.5 {T}"),
        ]
    );
    assert_eq!(converted.errors, ["metric 3: `lat`, data point 1: `sum` is NaN (cannot be stored)"]);
    let error = decode_with(b"{\"resourceMetrics\": 5}", JSON).unwrap_err();
    assert!(error.to_string().starts_with("invalid OTLP/JSON ExportMetricsServiceRequest"), "{error}");
    let error = decode_with(b"\x0a\xff\xff\xff\xff\x0f", "application/x-protobuf").unwrap_err();
    assert!(error.to_string().starts_with("invalid protobuf ExportMetricsServiceRequest"), "{error}");
}

#[test]
fn responses_and_statuses_decode_as_their_messages() {
    assert!(response(0, "", false).is_empty());
    let partial = ExportMetricsServiceResponse::decode(response(2, "two bad", false).as_slice()).unwrap();
    assert_eq!(partial.partial_success.unwrap().rejected_data_points, 2);
    let json: serde_json::Value = serde_json::from_slice(&response(2, "two bad", true)).unwrap();
    assert_eq!(json["partialSuccess"]["rejectedDataPoints"], "2");
    let status = Status::decode(status(503, "full", false).as_slice()).unwrap();
    assert_eq!((status.code, status.message.as_str()), (14, "full"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Any bytes, as protobuf or JSON: an error or points, never a panic.
    #[test]
    fn any_body_decodes_or_is_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        for content_type in ["application/x-protobuf", JSON] {
            if let Ok(converted) = decode_with(&bytes, content_type) {
                let lines = converted.lines.iter().filter(|&&b| b == b'\n').count();
                proptest::prop_assert_eq!(lines, converted.sources.len());
            }
        }
    }

    /// Gauges of any value and attributes: each data point is stored or refused, and a value
    /// stored is the value sent.
    #[test]
    fn every_data_point_is_accounted_for(
        points in proptest::collection::vec((proptest::num::f64::ANY, "[a-z. =,\\\\\"]{0,5}"), 0..10)
    ) {
        let data_points = points.iter().map(|(v, tag)| number(T, Number::AsDouble(*v), vec![string("k", tag)])).collect();
        let body = request(vec![metric("g", Data::Gauge(Gauge { data_points }))]).encode_to_vec();
        let converted = decode_with(&body, "").unwrap();
        let finite = points.iter().filter(|(v, _)| v.is_finite()).count();
        proptest::prop_assert_eq!(converted.sources.len(), finite);
        proptest::prop_assert_eq!(converted.error_count, points.len() - finite);
    }
}
