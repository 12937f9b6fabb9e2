//! The write endpoints of the protocols beside line protocol. Each names its format; the shared
//! path in [`super::write`] reads, decodes and stores, and the handler answers as its protocol's
//! clients expect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::write::{essence, store, Decode, Format, Stored, WriteParams};
use super::{HttpState, Protocol};
use crate::auth::Principal;
use crate::point::Precision;
use crate::protocols;

/// `POST /api/v1/write`: Prometheus remote write 1.0.
///
/// Its spec fixes the answers: 204 once stored; 400 when samples were invalid (Prometheus drops
/// the request and logs the message; the valid samples were stored); 429 and 503 make Prometheus
/// retry the same request, so those come only when nothing of it was stored.
pub(super) async fn prometheus(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    const FORMAT: Format = Format {
        protocol: Protocol::Prometheus,
        content_types: &["", "application/x-protobuf"],
        encodings: &["snappy"],
        decode: Decode::Converted(
            |body, request| protocols::prometheus::decode(body, request.limit),
            Precision::Nanoseconds,
        ),
    };
    answer(store(state, principal, FORMAT, headers, body).await, "sample(s)")
}

/// `POST /api/v1/points`: JSON lines. 204 once stored; 400 naming each bad line by number (the
/// good lines were stored), as for line protocol.
pub(super) async fn json_lines(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let precision = match params.read(Precision::from_v2, "ns, us, ms, s") {
        Ok(precision) => precision,
        Err(error) => return error.into_response(),
    };
    let format = Format {
        protocol: Protocol::JsonLines,
        content_types: &["", "application/x-ndjson", "application/jsonl", "application/json", "text/plain"],
        encodings: &["gzip", "x-gzip"],
        decode: Decode::Converted(|body, request| Ok(protocols::json_lines::decode(body, request)), precision),
    };
    answer(store(state, principal, format, headers, body).await, "line(s)")
}

/// `POST /v1/metrics`: OTLP/HTTP metrics, protobuf or JSON.
///
/// As the OTLP spec requires: 200 with an `ExportMetricsServiceResponse` once stored, with
/// `partial_success` counting and naming the data points refused (the rest were stored: OTLP
/// clients do not retry a 200); every other answer carries a `google.rpc.Status`. 400 and 413
/// are not retried, 429 and 503 (with `Retry-After`) are, and come only when nothing was stored.
/// Each body is in the request's encoding.
pub(super) async fn otlp(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    const FORMAT: Format = Format {
        protocol: Protocol::Otlp,
        content_types: &["application/x-protobuf", protocols::otlp::JSON],
        encodings: &["gzip"],
        decode: Decode::Converted(protocols::otlp::decode, Precision::Nanoseconds),
    };
    let json = essence(&headers) == protocols::otlp::JSON;
    let content_type = if json { protocols::otlp::JSON } else { "application/x-protobuf" };
    match store(state, principal, FORMAT, headers, body).await {
        Ok(stored) => {
            let errors = stored.errors();
            let message = match errors.len() {
                0 => String::new(),
                n if n < stored.error_count() => {
                    format!("{}; and {} more", errors.join("; "), stored.error_count() - n)
                }
                _ => errors.join("; "),
            };
            let body = protocols::otlp::response(stored.error_count(), &message, json);
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(response) => {
            // Our JSON error reply, re-encoded as the Status the spec asks for; headers such as
            // Retry-After stay.
            let (mut parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|reply| reply["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            let body = protocols::otlp::status(parts.status.as_u16(), &message, json);
            parts.headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
    }
}

/// `POST /collectd`: collectd's `write_http` plugin with `Format "JSON"`. 204 once stored; 400
/// naming each value list refused (the rest were stored; collectd logs the answer and does not
/// send the request again).
pub(super) async fn collectd(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    const FORMAT: Format = Format {
        protocol: Protocol::Collectd,
        content_types: &["", "application/json"],
        encodings: &["gzip"],
        decode: Decode::Converted(|body, _| protocols::collectd::decode(body), Precision::Nanoseconds),
    };
    answer(store(state, principal, FORMAT, headers, body).await, "value list(s)")
}

/// 204 when all was stored; 400 naming the `items` refused otherwise.
fn answer(stored: Result<Stored, Response>, items: &str) -> Response {
    match stored {
        Ok(stored) if stored.error_count() == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(stored) => rejected_items(&stored, items),
        Err(response) => response,
    }
}

/// 400 naming the items refused (the first [`crate::write::MAX_REPORTED_ERRORS`]); the rest of
/// the request was stored.
fn rejected_items(stored: &Stored, items: &str) -> Response {
    let errors = stored.errors();
    let body = json!({
        "code": "invalid",
        "message": format!(
            "{} {items} rejected, {} point(s) stored; first: {}",
            stored.error_count(),
            stored.parsed.points,
            errors.first().map_or("", String::as_str)
        ),
        "accepted_points": stored.parsed.points,
        "rejected": stored.error_count(),
        "errors": errors,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
