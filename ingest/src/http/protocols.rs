//! The write endpoints of the protocols beside line protocol. Each names its format; the shared
//! path in [`super::write`] reads, decodes and stores, and the handler answers as its protocol's
//! clients expect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::write::{store, Decode, Format, PrecisionParam, Stored};
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
    Query(params): Query<PrecisionParam>,
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
