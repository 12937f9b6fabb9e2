//! The write endpoints of the protocols beside line protocol. Each names its format; the shared
//! path in [`super::write`] reads, decodes and stores, and the handler answers as its protocol's
//! clients expect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::reply::error_response;
use super::write::{store, Decode, Format, Stored};
use super::{HttpState, Protocol};
use crate::auth::Principal;
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
        decode: Decode::Converted(|body, _, limit| protocols::prometheus::decode(body, limit)),
    };
    match store(state, principal, FORMAT, headers, body).await {
        Ok(stored) if stored.error_count() == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(stored) => rejected_items(&stored, "sample(s)"),
        Err(response) => response,
    }
}

/// 400 naming the items refused; the rest of the request was stored.
fn rejected_items(stored: &Stored, items: &str) -> Response {
    let errors = stored.errors();
    let message = format!(
        "{} {items} rejected, {} point(s) stored; first: {}",
        stored.error_count(),
        stored.parsed.points,
        errors.first().map_or("", String::as_str)
    );
    error_response(StatusCode::BAD_REQUEST, "invalid", message)
}
