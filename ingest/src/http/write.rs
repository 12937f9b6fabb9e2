//! `POST /write` (InfluxDB v1) and `POST /api/v2/write` (v2).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::body::{self, BodyError, Charge};
use super::reply::{error_response, unavailable, ApiError};
use super::HttpState;
use crate::auth::Principal;
use crate::limits::RateLimited;
use crate::point::{now_nanos, Precision};
use crate::write::{LinePolicy, ParsedBody, StoreError};

/// Query parameters of `/write`. `db`, `rp`, `u`, `p` and `consistency` are accepted and not used
/// (Augur has one keyspace; the region tag partitions it).
#[derive(Debug, Deserialize)]
pub(super) struct V1Params {
    precision: Option<String>,
}

/// Query parameters of `/api/v2/write`. `org` and `bucket` are accepted and not used.
#[derive(Debug, Deserialize)]
pub(super) struct V2Params {
    precision: Option<String>,
}

pub(super) async fn write_v1(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    Query(params): Query<V1Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match params.precision.as_deref().map(|p| (p, Precision::from_v1(p))) {
        None => write(state, principal, Precision::Nanoseconds, headers, body).await,
        Some((_, Some(precision))) => write(state, principal, precision, headers, body).await,
        Some((p, None)) => bad_precision(p, "n, u, ms, s, m, h"),
    }
}

pub(super) async fn write_v2(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    Query(params): Query<V2Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match params.precision.as_deref().map(|p| (p, Precision::from_v2(p))) {
        None => write(state, principal, Precision::Nanoseconds, headers, body).await,
        Some((_, Some(precision))) => write(state, principal, precision, headers, body).await,
        Some((p, None)) => bad_precision(p, "ns, us, ms, s"),
    }
}

fn bad_precision(given: &str, allowed: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid",
        format!("invalid precision `{given}`: expected one of {allowed}"),
    )
}

/// Content types real line-protocol clients send: none, text (Telegraf, influxdb-client),
/// octet-stream (influxdb-python) and form-urlencoded (`curl --data-binary`).
fn content_type_ok(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "text/plain" | "application/octet-stream" | "application/x-www-form-urlencoded" => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            format!(
                "Content-Type `{}` is not line protocol: send text/plain (or no Content-Type)",
                value.to_str().unwrap_or("<not ASCII>")
            ),
        )),
    }
}

/// Whether the body is gzip; `Err` for an encoding we do not speak.
fn is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            format!("Content-Encoding `{e}` is not supported: send gzip or identity"),
        )),
    }
}

async fn write(
    state: HttpState,
    principal: Arc<Principal>,
    precision: Precision,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = now_nanos();
    // Before reading the body: a client over its rate costs us as little as possible.
    if let Err(limited) = state.limits.rate.check(principal.rate_key(), principal.rate) {
        state.writer.stats().requests_rate_limited.fetch_add(1, Ordering::Relaxed);
        return rate_limited(&limited);
    }
    if let Err(error) = content_type_ok(&headers) {
        return error.into_response();
    }
    let gzip = match is_gzip(&headers) {
        Ok(gzip) => gzip,
        Err(error) => return error.into_response(),
    };
    let limit = state.config.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return body_error(BodyError::TooLarge { limit, after: "" });
    }
    // Shed before reading and parsing when a partition is already full: the request would be
    // refused after the work anyway, and under overload that wasted work is what slows the rest.
    if let Some(full) = state.writer.router().full_partition() {
        return unavailable(format!("{full}; nothing of this request was stored"));
    }
    let mut charge = Charge::new(state.inflight.clone());
    let raw = match body::read(body, limit, state.config.body_read_timeout, &mut charge).await {
        Ok(raw) => raw,
        Err(error) => return body_error(error),
    };
    let writer = state.writer.clone();
    let tenant = state.limits.series.as_ref().map(|budget| budget.tenant(&principal.tenant));
    let parsed = state
        .writer
        .run_cpu(move || {
            let policy = tenant.as_deref().map_or(LinePolicy::All, LinePolicy::Tenant);
            let parsed = if gzip {
                let text = body::gunzip(&raw, limit, &mut charge)?;
                writer.parse(&text, precision, now, (1, usize::MAX), policy)
            } else {
                writer.parse(&raw, precision, now, (1, usize::MAX), policy)
            };
            drop(charge);
            Ok::<_, BodyError>(parsed)
        })
        .await;
    let mut parsed = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return body_error(error),
    };
    let stored = state.writer.store(&mut parsed).await;
    if stored.is_ok() {
        state.limits.rate.charge(principal.rate_key(), principal.rate, parsed.points);
    }
    match stored {
        Ok(()) if parsed.error_count == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(()) => partial_write(&parsed),
        Err(error) => {
            state.writer.shed(&parsed);
            store_error(&error)
        }
    }
}

/// 503 with `Retry-After` when sending again later may work (a full partition or log, a disk
/// error); 500 when only a restart helps (the log stopped after a failed fsync).
fn store_error(error: &StoreError) -> Response {
    if error.is_retryable() {
        unavailable(format!("{error}; nothing of this request was stored"))
    } else {
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error", error.to_string())
    }
}

/// 400 naming the bad lines (the first [`crate::write::MAX_REPORTED_ERRORS`]); the good lines were
/// stored.
fn partial_write(parsed: &ParsedBody) -> Response {
    let errors: Vec<_> = parsed
        .errors
        .iter()
        .map(|e| json!({ "line": e.line, "column": e.column, "reason": e.reason.to_string() }))
        .collect();
    let first = parsed.errors.first().map(ToString::to_string).unwrap_or_default();
    let body = json!({
        "code": "invalid",
        "message": format!(
            "{} bad line(s) rejected, {} point(s) stored; first: {first}",
            parsed.error_count, parsed.points
        ),
        "accepted_points": parsed.points,
        "rejected_lines": parsed.error_count,
        "errors": errors,
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// 429 with `Retry-After` in whole seconds (at least 1, as the header cannot say less).
fn rate_limited(limited: &RateLimited) -> Response {
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "too many requests", limited.to_string());
    let seconds = limited.wait.as_secs() + u64::from(limited.wait.subsec_nanos() > 0);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(seconds.max(1)));
    response
}

fn body_error(error: BodyError) -> Response {
    let message = error.to_string();
    match error {
        BodyError::TooLarge { .. } => error_response(StatusCode::PAYLOAD_TOO_LARGE, "request too large", message),
        BodyError::Timeout(_) => error_response(StatusCode::REQUEST_TIMEOUT, "request timeout", message),
        BodyError::Busy => unavailable(message),
        BodyError::BadGzip(_) | BodyError::Read(_) => error_response(StatusCode::BAD_REQUEST, "invalid", message),
    }
}
