//! OTLP/HTTP metrics: `POST /v1/metrics`, an `ExportMetricsServiceRequest` as protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), plain or gzip.
//!
//! Mapping (docs/protocols.md): each data point is a point of the measurement named as the metric.
//! Its tags are the resource's attributes and then the point's own (the point's win), renamed by
//! `otlp.tag-names` (`host.name` → `host`, `cloud.region` → `region` by default) and without those
//! `otlp.drop-attributes` names (the SDK's own version, which would split every series at an
//! upgrade). Non-string attribute values become their text. Fields:
//!
//! | Metric | Fields |
//! |---|---|
//! | Gauge, non-monotonic Sum | `value` |
//! | monotonic Sum | `total` |
//! | Histogram | `count`, `sum`, `min`, `max`, and `le_<bound>` per bound (cumulative, as Prometheus' `le`) plus `le_inf` |
//! | ExponentialHistogram | `count`, `sum`, `min`, `max`, `scale`, `zero_count`, and `pos_<index>` / `neg_<index>` per non-empty bucket |
//! | Summary | `count`, `sum`, `quantile_<q>` |
//!
//! Delta metrics get the tag `temporality=delta`; cumulative ones (what SDKs send by default, and
//! what Prometheus counters are) none. Integer values stay integers; counts are unsigned. A point
//! flagged "no recorded value" is skipped; NaN and infinite values are refused by data point, as
//! are histograms whose buckets do not fit their bounds and sums without a temporality.

mod json;
mod proto;

use prost::Message;

use super::{Converted, DecodeError, Request};
use crate::config::OtlpConfig;
use crate::point::FieldValue;
use proto::{Data, DataPoint, KeyValue, Number, Value};

/// The Content-Type of OTLP/JSON; anything else the endpoint takes is protobuf.
pub const JSON: &str = "application/json";

/// Decodes an OTLP/HTTP metrics body into line protocol; the encoding is chosen by the
/// Content-Type.
///
/// # Errors
/// [`DecodeError::Message`] when the body is not an `ExportMetricsServiceRequest`.
pub fn decode(body: &[u8], request: &Request<'_>) -> Result<Converted, DecodeError> {
    let message = if request.content_type == JSON {
        serde_json::from_slice(body).map_err(|e| DecodeError::Message {
            format: "OTLP/JSON ExportMetricsServiceRequest",
            reason: e.to_string(),
        })?
    } else {
        proto::ExportMetricsServiceRequest::decode(body).map_err(|e| DecodeError::Message {
            format: "protobuf ExportMetricsServiceRequest",
            reason: e.to_string(),
        })?
    };
    Ok(convert(&message, request.otlp))
}

/// The body of a 200: an `ExportMetricsServiceResponse`, with `partial_success` when data points
/// were refused, in the request's encoding.
pub fn response(rejected: usize, message: &str, json: bool) -> Vec<u8> {
    let partial = (rejected > 0).then(|| proto::ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: message.to_owned(),
    });
    if json {
        let body = match partial {
            Some(p) => serde_json::json!({ "partialSuccess": {
                "rejectedDataPoints": p.rejected_data_points.to_string(), "errorMessage": p.error_message } }),
            None => serde_json::json!({}),
        };
        body.to_string().into_bytes()
    } else {
        proto::ExportMetricsServiceResponse { partial_success: partial }.encode_to_vec()
    }
}

/// The body of a 4xx or 5xx: a `google.rpc.Status` with the gRPC code matching `http_status`, in
/// the request's encoding.
pub fn status(http_status: u16, message: &str, json: bool) -> Vec<u8> {
    // google.rpc.Code, as the OTLP spec pairs them with HTTP statuses.
    let code = match http_status {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    };
    if json {
        serde_json::json!({ "code": code, "message": message }).to_string().into_bytes()
    } else {
        proto::Status { code, message: message.to_owned() }.encode_to_vec()
    }
}

fn convert(request: &proto::ExportMetricsServiceRequest, config: &OtlpConfig) -> Converted {
    let mut out = Converted::new("metric");
    let mut number = 0;
    for resource in &request.resource_metrics {
        let mut resource_tags = Vec::new();
        if let Some(attributes) = resource.resource.as_ref().map(|r| r.attributes.as_slice()) {
            add_tags(&mut resource_tags, attributes, config);
        }
        for metric in resource.scope_metrics.iter().flat_map(|scope| &scope.metrics) {
            number += 1;
            let mut metric_out =
                MetricOut { out: &mut out, number, metric: &metric.name, resource_tags: &resource_tags };
            if metric.name.is_empty() {
                metric_out.reject(0, "the metric has no name".into());
                continue;
            }
            match &metric.data {
                None => metric_out.reject(0, "the metric has no data (gauge, sum, histogram, ...)".into()),
                Some(Data::Gauge(gauge)) => {
                    metric_out.points(&gauge.data_points, false, |p| number_fields(p, "value"), config);
                }
                Some(Data::Sum(sum)) => {
                    if let Some(delta) = metric_out.temporality(sum.aggregation_temporality, "sum") {
                        let field = if sum.is_monotonic { "total" } else { "value" };
                        metric_out.points(&sum.data_points, delta, |p| number_fields(p, field), config);
                    }
                }
                Some(Data::Histogram(histogram)) => {
                    if let Some(delta) = metric_out.temporality(histogram.aggregation_temporality, "histogram") {
                        metric_out.points(&histogram.data_points, delta, histogram_fields, config);
                    }
                }
                Some(Data::ExponentialHistogram(histogram)) => {
                    let temporality = histogram.aggregation_temporality;
                    if let Some(delta) = metric_out.temporality(temporality, "exponential histogram") {
                        metric_out.points(&histogram.data_points, delta, exponential_fields, config);
                    }
                }
                Some(Data::Summary(summary)) => {
                    metric_out.points(&summary.data_points, false, summary_fields, config);
                }
            }
        }
    }
    out
}

/// Whether a temporality is delta; `None` when unspecified (the spec forbids it for these kinds).
fn is_delta(temporality: i32) -> Option<bool> {
    match temporality {
        proto::DELTA => Some(true),
        proto::CUMULATIVE => Some(false),
        _ => None,
    }
}

/// A point's fields, named as they will be stored, or why it cannot be stored.
type Fields = Result<Vec<(String, FieldValue<&'static str>)>, String>;

/// The points of one metric going out.
struct MetricOut<'a> {
    out: &'a mut Converted,
    /// The metric's number in the request, from 1.
    number: usize,
    metric: &'a str,
    resource_tags: &'a [(String, String)],
}

impl MetricOut<'_> {
    /// Refuses data point `index` (0-based) of the metric, or the whole metric when it has none.
    fn reject(&mut self, index: usize, reason: String) {
        let metric = self.metric;
        self.out.reject(self.number, || format!("`{metric}`, data point {}: {reason}", index + 1));
    }

    /// Whether the metric is delta; `None` (and the metric refused) when its temporality is
    /// unspecified, which the spec forbids for `kind`.
    fn temporality(&mut self, temporality: i32, kind: &str) -> Option<bool> {
        let delta = is_delta(temporality);
        if delta.is_none() {
            self.reject(0, format!("the {kind} has no aggregation temporality"));
        }
        delta
    }

    /// Each of `points`, with the fields `fields_of` gives it.
    fn points<P: DataPoint>(
        &mut self,
        points: &[P],
        delta: bool,
        fields_of: impl Fn(&P) -> Fields,
        config: &OtlpConfig,
    ) {
        for (index, point) in points.iter().enumerate() {
            self.point(index, point, delta, fields_of(point), config);
        }
    }

    fn point(&mut self, index: usize, point: &impl DataPoint, delta: bool, fields: Fields, config: &OtlpConfig) {
        let (attributes, time_unix_nano, flags) = (point.attributes(), point.time_unix_nano(), point.flags());
        if flags & proto::NO_RECORDED_VALUE != 0 {
            self.out.skipped += 1;
            return;
        }
        let fields = match fields {
            Ok(fields) => fields,
            Err(reason) => return self.reject(index, reason),
        };
        // 0 is "unset": the server's clock stands in.
        let time = match time_unix_nano {
            0 => None,
            t => match i64::try_from(t) {
                Ok(t) => Some(t),
                Err(_) => return self.reject(index, format!("time_unix_nano {t} is out of range")),
            },
        };
        let mut tags = self.resource_tags.to_vec();
        add_tags(&mut tags, attributes, config);
        if delta {
            tags.push(("temporality".into(), "delta".into()));
        }
        let tags = sorted_unique(tags);
        self.out.point(
            self.number,
            self.metric,
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            fields.iter().map(|(k, v)| (k.as_str(), *v)),
            time,
        );
    }
}

/// A number point's one field, named `field`.
fn number_fields(point: &proto::NumberDataPoint, field: &str) -> Fields {
    match point.value {
        // A point flagged as having no value is skipped before its fields are looked at.
        None => Err("the data point has no value".to_owned()),
        Some(Number::AsInt(n)) => Ok(vec![(field.to_owned(), FieldValue::Integer(n))]),
        Some(Number::AsDouble(v)) => finite(field, v).map(|v| vec![(field.to_owned(), v)]),
    }
}

/// A float field, or why it cannot be stored.
fn finite(name: &str, value: f64) -> Result<FieldValue<&'static str>, String> {
    if value.is_finite() {
        Ok(FieldValue::Float(value))
    } else {
        Err(format!("`{name}` is {value} (cannot be stored)"))
    }
}

/// `count`, then `sum`, `min` and `max` where sent.
fn summary_statistics(count: u64, stats: [(&str, Option<f64>); 3]) -> Fields {
    let mut fields = vec![("count".to_owned(), FieldValue::Unsigned(count))];
    for (name, value) in stats {
        if let Some(value) = value {
            fields.push((name.to_owned(), finite(name, value)?));
        }
    }
    Ok(fields)
}

fn histogram_fields(point: &proto::HistogramDataPoint) -> Fields {
    let mut fields = summary_statistics(point.count, [("sum", point.sum), ("min", point.min), ("max", point.max)])?;
    if point.bucket_counts.is_empty() {
        return Ok(fields);
    }
    if point.bucket_counts.len() != point.explicit_bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} explicit bounds: expected one more count than bounds",
            point.bucket_counts.len(),
            point.explicit_bounds.len()
        ));
    }
    if let Some(pair) =
        point.explicit_bounds.windows(2).find(|pair| pair[0].partial_cmp(&pair[1]) != Some(std::cmp::Ordering::Less))
    {
        return Err(format!("explicit bounds are not strictly increasing ({} then {})", pair[0], pair[1]));
    }
    if let Some(bound) = point.explicit_bounds.iter().find(|b| !b.is_finite()) {
        return Err(format!("explicit bound {bound} is not finite"));
    }
    let mut cumulative = 0u64;
    for (bound, count) in point.explicit_bounds.iter().zip(&point.bucket_counts) {
        cumulative = cumulative.saturating_add(*count);
        fields.push((format!("le_{bound}"), FieldValue::Unsigned(cumulative)));
    }
    let last = point.bucket_counts.last().copied().unwrap_or(0);
    fields.push(("le_inf".to_owned(), FieldValue::Unsigned(cumulative.saturating_add(last))));
    Ok(fields)
}

fn exponential_fields(point: &proto::ExponentialHistogramDataPoint) -> Fields {
    let mut fields = summary_statistics(point.count, [("sum", point.sum), ("min", point.min), ("max", point.max)])?;
    fields.push(("scale".to_owned(), FieldValue::Integer(point.scale.into())));
    fields.push(("zero_count".to_owned(), FieldValue::Unsigned(point.zero_count)));
    for (prefix, buckets) in [("pos", &point.positive), ("neg", &point.negative)] {
        let Some(buckets) = buckets else { continue };
        for (i, &count) in buckets.bucket_counts.iter().enumerate() {
            // Empty buckets are left out: absent means zero, and a sparse histogram stays small.
            if count > 0 {
                let index = i64::from(buckets.offset) + i as i64;
                fields.push((format!("{prefix}_{index}"), FieldValue::Unsigned(count)));
            }
        }
    }
    Ok(fields)
}

fn summary_fields(point: &proto::SummaryDataPoint) -> Fields {
    let mut fields = summary_statistics(point.count, [("sum", Some(point.sum)), ("min", None), ("max", None)])?;
    for quantile in &point.quantile_values {
        if !(0.0..=1.0).contains(&quantile.quantile) {
            return Err(format!("quantile {} is outside [0, 1]", quantile.quantile));
        }
        let name = format!("quantile_{}", quantile.quantile);
        let value = finite(&name, quantile.value)?;
        fields.push((name, value));
    }
    Ok(fields)
}

/// Appends `attributes` as tags, renamed and filtered as `config` says; empty values are left out
/// (an empty tag is an absent tag).
fn add_tags(tags: &mut Vec<(String, String)>, attributes: &[KeyValue], config: &OtlpConfig) {
    for attribute in attributes {
        if config.drops(&attribute.key) {
            continue;
        }
        let Some(value) = attribute.value.as_ref().and_then(|v| v.value.as_ref()).map(text) else { continue };
        if value.is_empty() {
            continue;
        }
        let key = config.tag_names.get(&attribute.key).unwrap_or(&attribute.key);
        tags.push((key.clone(), value));
    }
}

/// Tags sorted by key, the last of each key kept (a point's attribute over its resource's).
fn sorted_unique(mut tags: Vec<(String, String)>) -> Vec<(String, String)> {
    // A stable sort keeps equal keys in the order they came.
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unique: Vec<(String, String)> = Vec::with_capacity(tags.len());
    for tag in tags {
        match unique.last_mut() {
            Some(last) if last.0 == tag.0 => *last = tag,
            _ => unique.push(tag),
        }
    }
    unique
}

/// An attribute value as tag text: strings as they are, other scalars as written in JSON, arrays
/// and lists as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::StringValue(s) => s.clone(),
        other => json_value(other).to_string(),
    }
}

fn json_value(value: &Value) -> serde_json::Value {
    use base64::Engine;
    use serde_json::Value as Json;
    let any = |v: &proto::AnyValue| v.value.as_ref().map_or(Json::Null, json_value);
    match value {
        Value::StringValue(s) => Json::String(s.clone()),
        Value::BoolValue(b) => Json::Bool(*b),
        Value::IntValue(n) => Json::from(*n),
        Value::DoubleValue(v) => {
            serde_json::Number::from_f64(*v).map_or_else(|| Json::String(v.to_string()), Json::Number)
        }
        Value::ArrayValue(array) => Json::Array(array.values.iter().map(any).collect()),
        Value::KvlistValue(list) => Json::Object(
            list.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Json::Null, any))).collect(),
        ),
        Value::BytesValue(bytes) => Json::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
    }
}

#[cfg(test)]
mod tests;
