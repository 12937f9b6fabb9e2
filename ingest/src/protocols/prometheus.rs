//! Prometheus remote write 1.0: `POST /api/v1/write`, a snappy-compressed (block format)
//! protobuf `WriteRequest`.
//!
//! Mapping (docs/protocols.md): a series' `__name__` is the measurement, its other labels are tags
//! (the `region` label, like any tag named by `model.region-tag`, is the region), and each sample
//! is a point with one float field, `value`, at its millisecond timestamp. Empty label values
//! are absent labels, as in Prometheus. Staleness markers (a special NaN) are skipped; other
//! NaN and infinite values cannot be stored and are refused by sample.

use prost::Message;

use super::{Converted, DecodeError};
use crate::point::FieldValue;

/// `prometheus/prompb/types.proto` and `remote.proto`, the fields remote write 1.0 sends.
mod prompb {
    /// The request.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub(super) timeseries: Vec<TimeSeries>,
    }

    /// One series and its samples.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub(super) labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub(super) samples: Vec<Sample>,
    }

    /// A label pair.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Label {
        #[prost(string, tag = "1")]
        pub(super) name: String,
        #[prost(string, tag = "2")]
        pub(super) value: String,
    }

    /// A value at a time (ms).
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Sample {
        #[prost(double, tag = "1")]
        pub(super) value: f64,
        #[prost(int64, tag = "2")]
        pub(super) timestamp: i64,
    }
}

/// The bit pattern Prometheus marks a series stale with (`value.StaleNaN`).
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Decodes a remote-write body (snappy block, then protobuf) of at most `limit` bytes
/// uncompressed into line protocol.
///
/// # Errors
/// [`DecodeError`] when the body is not a snappy block, is too large, or is not a `WriteRequest`.
pub fn decode(body: &[u8], limit: u64) -> Result<Converted, DecodeError> {
    let length = snap::raw::decompress_len(body)
        .map_err(|e| DecodeError::Compression { format: "snappy", reason: e.to_string() })?;
    if length as u64 > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Compression { format: "snappy", reason: e.to_string() })?;
    let request = prompb::WriteRequest::decode(raw.as_slice())
        .map_err(|e| DecodeError::Message { format: "protobuf WriteRequest", reason: e.to_string() })?;
    Ok(convert(&request))
}

fn convert(request: &prompb::WriteRequest) -> Converted {
    let mut out = Converted::new("series");
    for (index, series) in request.timeseries.iter().enumerate() {
        let number = index + 1;
        let mut name = None;
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(series.labels.len());
        for label in &series.labels {
            if label.name == "__name__" {
                name = Some(label.value.as_str());
            } else if !label.value.is_empty() {
                tags.push((&label.name, &label.value));
            }
        }
        let describe = || {
            let labels: Vec<String> = series.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
            format!("{{{}}}", labels.join(", "))
        };
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            out.reject(number, || format!("{}: no `__name__` label", describe()));
            continue;
        };
        tags.sort_unstable();
        if let Some(pair) = tags.windows(2).find(|p| p[0].0 == p[1].0) {
            out.reject(number, || format!("{}: label `{}` appears twice", describe(), pair[0].0));
            continue;
        }
        for sample in &series.samples {
            if sample.value.to_bits() == STALE_NAN {
                out.skipped += 1;
                continue;
            }
            if !sample.value.is_finite() {
                out.reject(number, || {
                    format!("{}: sample at {} ms is {} (cannot be stored)", describe(), sample.timestamp, sample.value)
                });
                continue;
            }
            let Some(time) = sample.timestamp.checked_mul(1_000_000) else {
                out.reject(number, || format!("{}: timestamp {} ms is out of range", describe(), sample.timestamp));
                continue;
            };
            out.point(number, name, tags.iter().copied(), [("value", FieldValue::Float(sample.value))], Some(time));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::prompb::{Label, Sample, TimeSeries, WriteRequest};
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label { name: name.into(), value: value.into() }
    }

    fn body(request: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap()
    }

    #[test]
    fn series_become_points_with_labels_as_tags_and_stale_markers_skipped() {
        let request = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "node_load1"), label("job", "node"), label("instance", "a:9100")],
                    samples: vec![
                        Sample { value: 0.5, timestamp: 1_700_000_000_000 },
                        Sample { value: f64::from_bits(STALE_NAN), timestamp: 1_700_000_015_000 },
                    ],
                },
                TimeSeries {
                    labels: vec![label("__name__", "up"), label("empty", ""), label("region", "eu")],
                    samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
                },
                TimeSeries { labels: vec![label("job", "x")], samples: vec![Sample { value: 1.0, timestamp: 1 }] },
                TimeSeries {
                    labels: vec![label("__name__", "bad")],
                    samples: vec![Sample { value: f64::INFINITY, timestamp: 5 }],
                },
            ],
        };
        let converted = decode(&body(&request), 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8(converted.lines).unwrap(),
            "node_load1,instance=a:9100,job=node value=0.5 1700000000000000000\nup,region=eu value=1.0 1700000000000000000\n"
        );
        assert_eq!((converted.skipped, converted.error_count), (1, 2));
        assert!(converted.errors[0].contains("series 3: {job=\"x\"}: no `__name__` label"), "{:?}", converted.errors);
        assert!(converted.errors[1].contains("is inf (cannot be stored)"), "{:?}", converted.errors);
    }

    #[test]
    fn bad_frames_and_messages_are_named() {
        let error = decode(b"\xff\xff\xff\xff\xff\x01garbage", 1 << 20).unwrap_err();
        assert!(error.to_string().starts_with("invalid snappy body"), "{error}");
        let not_protobuf = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff\xff\x0f").unwrap();
        let error = decode(&not_protobuf, 1 << 20).unwrap_err();
        assert!(error.to_string().starts_with("invalid protobuf WriteRequest"), "{error}");
        let big = snap::raw::Encoder::new().compress_vec(&vec![0; 4096]).unwrap();
        assert!(matches!(decode(&big, 1024), Err(DecodeError::TooLarge(1024))));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Any bytes, as a frame or inside a valid frame: an error or points, never a panic, and
        /// never more than the limit decompressed.
        #[test]
        fn any_body_decodes_or_is_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode(&bytes, 1 << 16);
            let framed = snap::raw::Encoder::new().compress_vec(&bytes).unwrap();
            if let Ok(converted) = decode(&framed, 1 << 16) {
                let lines = converted.lines.iter().filter(|&&b| b == b'\n').count();
                proptest::prop_assert_eq!(lines, converted.sources.len());
            }
        }
    }
}
