//! The OTLP metrics messages (`opentelemetry/proto/{collector/metrics,metrics,common,resource}/v1`),
//! declared by hand with the fields Augur reads: prost skips the rest (exemplars, scopes, schema
//! URLs), and so does serde for OTLP/JSON. One declaration serves both encodings, so they cannot
//! drift apart. JSON follows the OTLP spec: lowerCamelCase keys, 64-bit integers as strings (or
//! numbers), enums as integers, and unknown keys ignored.

use serde::Deserialize;

use super::json;

/// `ExportMetricsServiceRequest`: the body of `POST /v1/metrics`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ExportMetricsServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub(crate) resource_metrics: Vec<ResourceMetrics>,
}

/// The metrics of one resource (a process, a host).
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ResourceMetrics {
    #[prost(message, optional, tag = "1")]
    pub(crate) resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) scope_metrics: Vec<ScopeMetrics>,
}

/// `Resource`: the attributes of what sends.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub(crate) attributes: Vec<KeyValue>,
}

/// The metrics of one instrumentation scope (a library); the scope itself is not read.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ScopeMetrics {
    #[prost(message, repeated, tag = "2")]
    pub(crate) metrics: Vec<Metric>,
}

/// One metric: a name and its data points of one kind.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Metric {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(oneof = "Data", tags = "5, 7, 9, 10, 11")]
    #[serde(flatten)]
    pub(crate) data: Option<Data>,
}

/// `Metric.data`.
#[derive(Clone, PartialEq, prost::Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Data {
    #[prost(message, tag = "5")]
    Gauge(Gauge),
    #[prost(message, tag = "7")]
    Sum(Sum),
    #[prost(message, tag = "9")]
    Histogram(Histogram),
    #[prost(message, tag = "10")]
    ExponentialHistogram(ExponentialHistogram),
    #[prost(message, tag = "11")]
    Summary(Summary),
}

/// `AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA`.
pub(crate) const DELTA: i32 = 1;
/// `AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE`.
pub(crate) const CUMULATIVE: i32 = 2;
/// `DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK`: the point marks a gap, it has no value.
pub(crate) const NO_RECORDED_VALUE: u32 = 1;

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Gauge {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<NumberDataPoint>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Sum {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<NumberDataPoint>,
    /// An `AggregationTemporality` (an enum is a varint on the wire, like `int32`).
    #[prost(int32, tag = "2")]
    #[serde(deserialize_with = "json::temporality")]
    pub(crate) aggregation_temporality: i32,
    #[prost(bool, tag = "3")]
    pub(crate) is_monotonic: bool,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Histogram {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<HistogramDataPoint>,
    #[prost(int32, tag = "2")]
    #[serde(deserialize_with = "json::temporality")]
    pub(crate) aggregation_temporality: i32,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ExponentialHistogram {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<ExponentialHistogramDataPoint>,
    #[prost(int32, tag = "2")]
    #[serde(deserialize_with = "json::temporality")]
    pub(crate) aggregation_temporality: i32,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub(crate) data_points: Vec<SummaryDataPoint>,
}

/// What every kind of data point has beside its values.
pub(crate) trait DataPoint {
    fn attributes(&self) -> &[KeyValue];
    fn time_unix_nano(&self) -> u64;
    fn flags(&self) -> u32;
}

macro_rules! data_point {
    ($($point:ty),*) => {$(
        impl DataPoint for $point {
            fn attributes(&self) -> &[KeyValue] {
                &self.attributes
            }
            fn time_unix_nano(&self) -> u64 {
                self.time_unix_nano
            }
            fn flags(&self) -> u32 {
                self.flags
            }
        }
    )*};
}

data_point!(NumberDataPoint, HistogramDataPoint, ExponentialHistogramDataPoint, SummaryDataPoint);

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct NumberDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub(crate) attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) time_unix_nano: u64,
    #[prost(oneof = "Number", tags = "4, 6")]
    #[serde(flatten)]
    pub(crate) value: Option<Number>,
    #[prost(uint32, tag = "8")]
    pub(crate) flags: u32,
}

/// `NumberDataPoint.value`.
#[derive(Clone, Copy, PartialEq, prost::Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Number {
    #[prost(double, tag = "4")]
    AsDouble(#[serde(deserialize_with = "json::f64")] f64),
    #[prost(sfixed64, tag = "6")]
    AsInt(#[serde(deserialize_with = "json::i64")] i64),
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct HistogramDataPoint {
    #[prost(message, repeated, tag = "9")]
    pub(crate) attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) count: u64,
    #[prost(double, optional, tag = "5")]
    #[serde(deserialize_with = "json::optional_f64")]
    pub(crate) sum: Option<f64>,
    #[prost(fixed64, repeated, tag = "6")]
    #[serde(deserialize_with = "json::u64s")]
    pub(crate) bucket_counts: Vec<u64>,
    #[prost(double, repeated, tag = "7")]
    #[serde(deserialize_with = "json::f64s")]
    pub(crate) explicit_bounds: Vec<f64>,
    #[prost(uint32, tag = "10")]
    pub(crate) flags: u32,
    #[prost(double, optional, tag = "11")]
    #[serde(deserialize_with = "json::optional_f64")]
    pub(crate) min: Option<f64>,
    #[prost(double, optional, tag = "12")]
    #[serde(deserialize_with = "json::optional_f64")]
    pub(crate) max: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ExponentialHistogramDataPoint {
    #[prost(message, repeated, tag = "1")]
    pub(crate) attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) count: u64,
    #[prost(double, optional, tag = "5")]
    #[serde(deserialize_with = "json::optional_f64")]
    pub(crate) sum: Option<f64>,
    #[prost(sint32, tag = "6")]
    pub(crate) scale: i32,
    #[prost(fixed64, tag = "7")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) zero_count: u64,
    #[prost(message, optional, tag = "8")]
    pub(crate) positive: Option<Buckets>,
    #[prost(message, optional, tag = "9")]
    pub(crate) negative: Option<Buckets>,
    #[prost(uint32, tag = "10")]
    pub(crate) flags: u32,
    #[prost(double, optional, tag = "12")]
    #[serde(deserialize_with = "json::optional_f64")]
    pub(crate) min: Option<f64>,
    #[prost(double, optional, tag = "13")]
    #[serde(deserialize_with = "json::optional_f64")]
    pub(crate) max: Option<f64>,
}

/// `ExponentialHistogramDataPoint.Buckets`: counts of consecutive buckets from index `offset`.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Buckets {
    #[prost(sint32, tag = "1")]
    pub(crate) offset: i32,
    #[prost(uint64, repeated, tag = "2")]
    #[serde(deserialize_with = "json::u64s")]
    pub(crate) bucket_counts: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct SummaryDataPoint {
    #[prost(message, repeated, tag = "7")]
    pub(crate) attributes: Vec<KeyValue>,
    #[prost(fixed64, tag = "3")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) time_unix_nano: u64,
    #[prost(fixed64, tag = "4")]
    #[serde(deserialize_with = "json::u64")]
    pub(crate) count: u64,
    #[prost(double, tag = "5")]
    #[serde(deserialize_with = "json::f64")]
    pub(crate) sum: f64,
    #[prost(message, repeated, tag = "6")]
    pub(crate) quantile_values: Vec<ValueAtQuantile>,
    #[prost(uint32, tag = "8")]
    pub(crate) flags: u32,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ValueAtQuantile {
    #[prost(double, tag = "1")]
    #[serde(deserialize_with = "json::f64")]
    pub(crate) quantile: f64,
    #[prost(double, tag = "2")]
    #[serde(deserialize_with = "json::f64")]
    pub(crate) value: f64,
}

/// An attribute.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct KeyValue {
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<AnyValue>,
}

/// An attribute's value.
#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 2, 3, 4, 5, 6, 7")]
    #[serde(flatten)]
    pub(crate) value: Option<Value>,
}

/// `AnyValue.value`. The variants are named as the proto's fields: serde takes the JSON keys
/// (`stringValue`, ...) from them.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, PartialEq, prost::Oneof, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Value {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(int64, tag = "3")]
    IntValue(#[serde(deserialize_with = "json::i64")] i64),
    #[prost(double, tag = "4")]
    DoubleValue(#[serde(deserialize_with = "json::f64")] f64),
    #[prost(message, tag = "5")]
    ArrayValue(ArrayValue),
    #[prost(message, tag = "6")]
    KvlistValue(KeyValueList),
    /// Base64 in JSON.
    #[prost(bytes, tag = "7")]
    BytesValue(#[serde(deserialize_with = "json::base64")] Vec<u8>),
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub(crate) values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub(crate) values: Vec<KeyValue>,
}

/// `ExportMetricsServiceResponse`: the body of a 200.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportMetricsServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) partial_success: Option<ExportMetricsPartialSuccess>,
}

/// What of a request was refused, though the rest was stored.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ExportMetricsPartialSuccess {
    #[prost(int64, tag = "1")]
    pub(crate) rejected_data_points: i64,
    #[prost(string, tag = "2")]
    pub(crate) error_message: String,
}

/// `google.rpc.Status`: the body of every 4xx and 5xx answer.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Status {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}
