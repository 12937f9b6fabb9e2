//! `POST /write` (InfluxDB v1) and `POST /api/v2/write` (v2), and the path every write endpoint
//! shares: limits, body, decoding, parsing, storing.

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
use super::{HttpState, Protocol};
use crate::auth::Principal;
use crate::limits::RateLimited;
use crate::point::{now_nanos, Precision};
use crate::protocols::{Converted, DecodeError, Request};
use crate::router::Rejected;
use crate::write::{LinePolicy, ParsedBody, StoreError};

/// The query parameters of the write endpoints Augur reads: `precision`, and v1's `db` (listed
/// by `SHOW DATABASES`). Others (`rp`, `u`, `p`, `consistency` of v1; `org`, `bucket` of v2) are
/// accepted and not used: Augur has one keyspace, and the region tag partitions it.
#[derive(Debug, Deserialize)]
pub(super) struct WriteParams {
    precision: Option<String>,
    db: Option<String>,
}

impl WriteParams {
    /// The precision asked for (ns when none), read by `parse`; a 400 listing `allowed` otherwise.
    pub(super) fn read(&self, parse: fn(&str) -> Option<Precision>, allowed: &str) -> Result<Precision, ApiError> {
        match self.precision.as_deref() {
            None => Ok(Precision::Nanoseconds),
            Some(given) => parse(given).ok_or_else(|| {
                let message = format!("invalid precision `{given}`: expected one of {allowed}");
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
            }),
        }
    }
}

pub(super) async fn write_v1(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match params.read(Precision::from_v1, "n or ns, u, ms, s, m, h (InfluxDB 1.x has no `us`: use u)") {
        Ok(precision) => {
            if let Some(db) = &params.db {
                state.handshakes.record_database(db);
            }
            write(state, principal, precision, headers, body).await
        }
        Err(error) => error.into_response(),
    }
}

pub(super) async fn write_v2(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match params.read(Precision::from_v2, "ns, us, ms, s") {
        Ok(precision) => write(state, principal, precision, headers, body).await,
        Err(error) => error.into_response(),
    }
}

/// A write endpoint's body: its content types and encodings, and how it becomes line protocol.
#[derive(Debug, Clone, Copy)]
pub(super) struct Format {
    /// Whose counters the request goes to.
    pub(super) protocol: Protocol,
    /// Content-Type essences accepted (lowercase); `""` accepts a request without one.
    pub(super) content_types: &'static [&'static str],
    /// Content-Encodings accepted beside identity. `gzip` is undone here; any other (Prometheus'
    /// `snappy`) is the decoder's to undo.
    pub(super) encodings: &'static [&'static str],
    pub(super) decode: Decode,
}

/// How a body becomes points.
#[derive(Debug, Clone, Copy)]
pub(super) enum Decode {
    /// Line protocol with timestamps at this precision.
    LineProtocol(Precision),
    /// Another protocol, turned into line protocol by a decoder.
    Converted(fn(&[u8], &Request<'_>) -> Result<Converted, DecodeError>, Precision),
}

/// Line protocol. The content types real clients send: none, text (Telegraf, influxdb-client),
/// octet-stream (influxdb-python) and form-urlencoded (`curl --data-binary`).
const LINE_PROTOCOL_TYPES: &[&str] =
    &["", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded"];

fn line_protocol(precision: Precision) -> Format {
    Format {
        protocol: Protocol::Influx,
        content_types: LINE_PROTOCOL_TYPES,
        encodings: &["gzip", "x-gzip"],
        decode: Decode::LineProtocol(precision),
    }
}

/// The Content-Type essence, lowercase (`""` when absent).
pub(super) fn essence(headers: &HeaderMap) -> String {
    let value = headers.get(header::CONTENT_TYPE).map_or("", |v| v.to_str().unwrap_or("<not ASCII>"));
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The Content-Type essence, if the format accepts it.
fn content_type(headers: &HeaderMap, format: &Format) -> Result<String, ApiError> {
    let value = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("<not ASCII>"));
    let essence = essence(headers);
    if format.content_types.contains(&essence.as_str()) {
        return Ok(essence);
    }
    let accepted: Vec<_> = format.content_types.iter().filter(|t| !t.is_empty()).copied().collect();
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported media type",
        format!(
            "Content-Type `{}` is not accepted by {}: send {}",
            value.unwrap_or("(none)"),
            format.protocol.describe(),
            accepted.join(" or ")
        ),
    ))
}

/// Whether the body is gzip; `Err` for an encoding the format does not take.
fn is_gzip(headers: &HeaderMap, format: &Format) -> Result<bool, ApiError> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match encoding {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if format.encodings.contains(&e.as_str()) => Ok(e == "gzip" || e == "x-gzip"),
        Some(e) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            format!(
                "Content-Encoding `{e}` is not accepted by {}: send {} or identity",
                format.protocol.describe(),
                format.encodings.join(" or ")
            ),
        )),
    }
}

/// A stored request: its points, and what was refused in it.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) parsed: ParsedBody,
    /// For another protocol: the body as line protocol, and the items its decoder refused.
    pub(super) converted: Option<Converted>,
}

impl Stored {
    /// Items refused: bad lines, or points and samples.
    pub(super) fn error_count(&self) -> usize {
        self.parsed.error_count + self.converted.as_ref().map_or(0, |c| c.error_count)
    }

    /// The first [`crate::write::MAX_REPORTED_ERRORS`] refusals, each naming the item.
    pub(super) fn errors(&self) -> Vec<String> {
        let Some(converted) = &self.converted else {
            return self.parsed.errors.iter().map(ToString::to_string).collect();
        };
        let mut errors = converted.errors.clone();
        errors.extend(self.parsed.errors.iter().map(|e| converted.describe(e.line, &e.reason)));
        errors.truncate(crate::write::MAX_REPORTED_ERRORS);
        errors
    }
}

/// Reads, decodes, parses and stores one write request; `Err` is the reply when nothing was
/// stored. Every write endpoint goes through here, so each has the same limits, shedding and log.
pub(super) async fn store(
    state: HttpState,
    principal: Arc<Principal>,
    format: Format,
    headers: HeaderMap,
    body: Body,
) -> Result<Stored, Response> {
    let now = now_nanos();
    let writer = state.writer(format.protocol).clone();
    // Before reading the body: a client over its rate costs us as little as possible.
    if let Err(limited) = state.limits.rate.check(principal.rate_key(), principal.rate) {
        writer.stats().requests_rate_limited.fetch_add(1, Ordering::Relaxed);
        return Err(rate_limited(&limited));
    }
    let essence = content_type(&headers, &format).map_err(IntoResponse::into_response)?;
    let gzip = is_gzip(&headers, &format).map_err(IntoResponse::into_response)?;
    let limit = state.config.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(body_error(BodyError::TooLarge { limit, after: "" }));
    }
    // Backpressure before reading the body: while a partition is full the request waits (its
    // body stays in the socket), and is shed only when no room came within `admission-wait`.
    // Parsing a request that would be refused anyway is the wasted work that slows the rest.
    let admission_deadline = tokio::time::Instant::now() + state.config.admission_wait;
    if let Some(full) = writer.router().wait_for_room(state.config.admission_wait).await {
        return Err(unavailable(format!("{full}; nothing of this request was stored")));
    }
    let mut charge = Charge::new(state.inflight.clone());
    let raw = body::read(body, limit, state.config.body_read_timeout, &mut charge).await.map_err(body_error)?;
    let tenant = state.limits.series.as_ref().map(|budget| budget.tenant(&principal.tenant));
    let (cpu, otlp) = (writer.clone(), state.otlp.clone());
    let decoded = writer
        .run_cpu(move || {
            let policy = tenant.as_deref().map_or(LinePolicy::All, LinePolicy::Tenant);
            let gunzipped = if gzip {
                Some(body::gunzip(&raw, limit, &mut charge).map_err(|e| Box::new(body_error(e)))?)
            } else {
                None
            };
            let text = gunzipped.as_deref().unwrap_or(&raw);
            let stored = match format.decode {
                Decode::LineProtocol(precision) => {
                    let parsed = cpu.parse(text, precision, now, (1, usize::MAX), policy);
                    Stored { parsed, converted: None }
                }
                Decode::Converted(decode, precision) => {
                    let request = Request { content_type: &essence, limit, precision, otlp: &otlp };
                    let converted = decode(text, &request).map_err(|e| Box::new(decode_error(e)))?;
                    cpu.stats().lines_invalid.fetch_add(converted.error_count as u64, Ordering::Relaxed);
                    let parsed = cpu.parse(&converted.lines, Precision::Nanoseconds, now, (1, usize::MAX), policy);
                    Stored { parsed, converted: Some(converted) }
                }
            };
            drop(charge);
            Ok::<_, Box<Response>>(stored)
        })
        .await;
    let mut stored = decoded.map_err(|response| *response)?;
    let mut result = writer.store(&mut stored.parsed).await;
    // No room for all of its batches yet: try again each time a partition frees some, within the
    // same deadline (each failed try leaves nothing queued).
    while matches!(result, Err(StoreError::Rejected(Rejected::Full { .. })))
        && writer.router().wait_for_release(admission_deadline).await
    {
        result = writer.store(&mut stored.parsed).await;
    }
    match result {
        Ok(()) => {
            state.limits.rate.charge(principal.rate_key(), principal.rate, stored.parsed.points);
            Ok(stored)
        }
        Err(error) => {
            writer.shed(&stored.parsed);
            Err(store_error(&error))
        }
    }
}

async fn write(
    state: HttpState,
    principal: Arc<Principal>,
    precision: Precision,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match store(state, principal, line_protocol(precision), headers, body).await {
        Ok(stored) if stored.error_count() == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(stored) => partial_write(&stored.parsed),
        Err(response) => response,
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

/// 400 naming what of the body could not be read; nothing of it was stored.
fn decode_error(error: DecodeError) -> Response {
    let message = format!("{error}; nothing of this request was stored");
    match error {
        DecodeError::TooLarge(_) => error_response(StatusCode::PAYLOAD_TOO_LARGE, "request too large", message),
        DecodeError::Compression { .. } | DecodeError::Message { .. } => {
            error_response(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }
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
