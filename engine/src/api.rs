//! The query API over the hot tier: `GET /api/v1/series`, `/api/v1/rollups`, `/api/v1/latest`,
//! `/api/v1/predictions` (docs/postgres.md). Parameters are checked here, every problem named; the reads fan out to every
//! PostgreSQL shard ([`HotQuery`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use augur_storage::postgres::query::{PredictionFilter, QueryError, SeriesFilter};
use augur_storage::postgres::HotQuery;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use humantime_serde::re::humantime;

use crate::predict::risk::RiskBoard;
use crate::window::Resolution;

/// The most rows one rollups query may return (series × windows).
const MAX_ROWS: i64 = 1_000_000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// `None` when no shard is configured.
    hot: Option<HotQuery>,
    /// The configured resolutions, finest first.
    resolutions: Vec<Resolution>,
}

/// The query routes.
pub fn routes(hot: Option<HotQuery>, resolutions: Vec<Resolution>) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/series", get(series))
        .route("/api/v1/rollups", get(rollups))
        .route("/api/v1/latest", get(latest))
        .route("/api/v1/predictions", get(predictions))
        .with_state(ApiState { hot, resolutions })
}

type Params = Query<HashMap<String, String>>;

async fn series(State(state): State<ApiState>, Query(params): Params) -> Response {
    let answer = async {
        let hot = state.hot()?;
        let mut params = Parameters::new(params);
        let filter = params.filter();
        params.finish()?;
        Ok(Json(hot.series(&filter).await?).into_response())
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

async fn rollups(State(state): State<ApiState>, Query(params): Params) -> Response {
    let answer = async {
        let hot = state.hot()?;
        let mut params = Parameters::new(params);
        let Selection { filter, field, resolution, now } = params.selection(&state)?;
        let start = params.time("start", now)?.unwrap_or(now - 3_600_000_000_000);
        let end = params.time("end", now)?.unwrap_or(now);
        let csv = match params.take("format").as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => return Err(ApiError::bad(format!("format={other:?}: use json or csv"))),
        };
        params.finish()?;
        if start >= end {
            return Err(ApiError::bad("start must be before end".into()));
        }
        // i128: a range from the distant past to the far future must not wrap.
        let windows =
            ((i128::from(end) - i128::from(start) - 1) / i128::from(resolution.nanos) + 1).min(i128::from(i64::MAX));
        let windows = windows as i64;
        let rows = hot.rollups(&filter, field, &resolution.name, (start, end), (windows, MAX_ROWS)).await?;
        if !csv {
            return Ok(Json(rows).into_response());
        }
        let mut out = String::from("series,field,resolution,window_start,window_end,count,sum,min,max,mean,stddev,first,last,p50,p90,p95,p99,partial\n");
        let number = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_text(&r.series),
                csv_text(&r.field),
                r.resolution,
                r.window_start,
                r.window_end,
                r.count,
                number(r.sum),
                number(r.min),
                number(r.max),
                number(r.mean),
                number(r.stddev),
                number(r.first),
                number(r.last),
                number(r.p50),
                number(r.p90),
                number(r.p95),
                number(r.p99),
                r.partial
            );
        }
        Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

async fn latest(State(state): State<ApiState>, Query(params): Params) -> Response {
    let answer = async {
        let hot = state.hot()?;
        let mut params = Parameters::new(params);
        let Selection { filter, field, resolution, now } = params.selection(&state)?;
        let since = params.time("since", now)?.unwrap_or(now - 3_600_000_000_000);
        params.finish()?;
        Ok(Json(hot.latest(&filter, field, &resolution.name, since).await?).into_response())
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

/// The riskiest hosts now (`GET /api/v1/risk?region=<r>&top=<n>`, default 10, at most 1000),
/// from the pipelines' live risk board: no PostgreSQL needed.
pub fn risk_routes(board: Arc<RiskBoard>) -> axum::Router {
    axum::Router::new().route("/api/v1/risk", get(risk)).with_state(board)
}

async fn risk(State(board): State<Arc<RiskBoard>>, Query(params): Params) -> Response {
    let answer = async {
        let mut params = Parameters::new(params);
        let region = params.take("region");
        let top = match params.take("top") {
            None => 10,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| ApiError::bad(format!("top={text:?}: expected a number from 1 to 1000")))?,
        };
        params.finish()?;
        Ok(Json(board.top(region.as_deref(), top)).into_response())
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

/// Events newest first: `region`, `host` (the entity), `kind`, `since` (default `now-24h`),
/// `min_score` (default 0), `limit` (default 1000, at most 10000).
async fn predictions(State(state): State<ApiState>, Query(params): Params) -> Response {
    let answer = async {
        let hot = state.hot()?;
        let mut params = Parameters::new(params);
        let now = augur_storage::now_nanos();
        let since = params.time("since", now)?.unwrap_or(now - 24 * 3_600_000_000_000);
        let number = |params: &mut Parameters, name: &str, default: f64, range: std::ops::RangeInclusive<f64>| {
            let Some(text) = params.take(name) else { return Ok(default) };
            text.parse::<f64>().ok().filter(|v| range.contains(v)).ok_or_else(|| {
                ApiError::bad(format!("{name}={text:?}: expected a number from {} to {}", range.start(), range.end()))
            })
        };
        let min_score = number(&mut params, "min_score", 0.0, 0.0..=1.0)?;
        let limit = number(&mut params, "limit", 1000.0, 1.0..=10_000.0)? as i64;
        let filter = PredictionFilter {
            region: params.take("region"),
            entity: params.take("host"),
            kind: params.take("kind"),
            since,
            min_score,
            limit,
        };
        params.finish()?;
        Ok(Json(hot.predictions(filter).await?).into_response())
    };
    answer.await.unwrap_or_else(ApiError::into_response)
}

impl ApiState {
    fn hot(&self) -> Result<&HotQuery, ApiError> {
        self.hot.as_ref().ok_or(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the hot tier is not configured: add [[postgres.shards]] to the config".into(),
        })
    }

    /// The resolution named `name`, or the finest.
    fn resolution(&self, name: Option<String>) -> Result<Resolution, ApiError> {
        match name {
            None => Ok(self.resolutions[0].clone()),
            Some(name) => self.resolutions.iter().find(|r| r.name == name).cloned().ok_or_else(|| {
                let known: Vec<&str> = self.resolutions.iter().map(|r| r.name.as_str()).collect();
                ApiError::bad(format!("resolution={name:?} is not one of {}", known.join(", ")))
            }),
        }
    }
}

/// What the rollups and latest queries both read: which series, which field, at which resolution,
/// and the time "now" in their time parameters means.
struct Selection {
    filter: SeriesFilter,
    field: Option<String>,
    resolution: Resolution,
    now: i64,
}

/// Query parameters, taken one by one so leftovers can be refused by name.
struct Parameters(HashMap<String, String>);

impl Parameters {
    fn new(params: HashMap<String, String>) -> Self {
        Self(params)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// `measurement`, `region` and every `tag.<key>`.
    fn filter(&mut self) -> SeriesFilter {
        let tag_keys: Vec<String> = self.0.keys().filter(|k| k.starts_with("tag.")).cloned().collect();
        let mut tags: Vec<(String, String)> = tag_keys
            .into_iter()
            .filter_map(|k| {
                let value = self.0.remove(&k)?;
                Some((k["tag.".len()..].to_owned(), value))
            })
            .collect();
        tags.sort();
        SeriesFilter { measurement: self.take("measurement"), region: self.take("region"), tags }
    }

    /// `filter` plus `field` and `resolution` (default: the finest).
    fn selection(&mut self, state: &ApiState) -> Result<Selection, ApiError> {
        let filter = self.filter();
        let field = self.take("field");
        let resolution = state.resolution(self.take("resolution"))?;
        Ok(Selection { filter, field, resolution, now: augur_storage::now_nanos() })
    }

    /// A time parameter: RFC 3339 (`2026-11-23T04:00:00Z`), `now`, or `now-<duration>` (`now-24h`).
    fn time(&mut self, name: &str, now: i64) -> Result<Option<i64>, ApiError> {
        let Some(text) = self.take(name) else { return Ok(None) };
        let bad = |why: String| ApiError::bad(format!("{name}={text:?}: {why}; use RFC 3339, now or now-<duration>"));
        if text == "now" {
            return Ok(Some(now));
        }
        if let Some(ago) = text.strip_prefix("now-") {
            let ago: Duration = humantime::parse_duration(ago).map_err(|e| bad(e.to_string()))?;
            return Ok(Some(now.saturating_sub(i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX))));
        }
        let time = humantime::parse_rfc3339_weak(&text).map_err(|e| bad(e.to_string()))?;
        let nanos = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad("before 1970".into()))?.as_nanos();
        Ok(Some(i64::try_from(nanos).map_err(|_| bad("too far in the future".into()))?))
    }

    /// Refuses parameters nobody took.
    fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut unknown: Vec<String> = self.0.into_keys().collect();
        unknown.sort();
        Err(ApiError::bad(format!("unknown parameter(s): {}", unknown.join(", "))))
    }
}

/// A JSON error answer: `{"error": "..."}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: String) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message }
    }

    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        let status = match error {
            QueryError::TooManySeries { .. } | QueryError::TooManyRows { .. } => StatusCode::BAD_REQUEST,
            QueryError::Shards(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self { status, message: error.to_string() }
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_text(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
