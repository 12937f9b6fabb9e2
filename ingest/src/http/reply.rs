//! JSON replies shared by every endpoint: `{"code": ..., "message": ...}` like InfluxDB v2.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A JSON error reply `{"code", "message"}` with `status`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "code": code, "message": message.into() });
    (status, Json(body)).into_response()
}

/// An error reply not yet rendered: small enough to return in a `Result`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, self.message)
    }
}

/// A 503 telling the client when to retry.
pub(super) fn unavailable(message: impl Into<String>) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

pub(super) async fn health() -> Response {
    let body = json!({ "name": "augur", "status": "pass", "version": env!("CARGO_PKG_VERSION") });
    (StatusCode::OK, Json(body)).into_response()
}

pub(super) async fn not_found(uri: axum::http::Uri) -> Response {
    error_response(StatusCode::NOT_FOUND, "not found", format!("no endpoint at {}", uri.path()))
}

pub(super) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        format!("{} does not accept {method}", uri.path()),
    )
}
