//! What InfluxDB clients check besides writing: `/ping` and its version headers, the `/query`
//! statements they send to set themselves up, and the 2.x readiness and health endpoints. Augur
//! answers them as InfluxDB 1.8 does (1.8 also serves `/api/v2/write` and `/health`), so Telegraf,
//! Grafana and the client libraries take it for a 1.x server that accepts 2.x writes.
//!
//! `/query` runs no query: it answers `CREATE DATABASE`, `CREATE RETENTION POLICY`,
//! `SHOW DATABASES` and `SHOW RETENTION POLICIES`, and refuses every other statement with an
//! error naming where the data can be read instead (docs/protocols.md).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Extension, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{self, Charge};
use super::HttpState;
use crate::auth::{url_pairs, Principal};
use crate::config::Scope;

/// The InfluxDB version Augur answers as: the last 1.x, whose API Augur's write endpoints follow.
pub const INFLUXDB_VERSION: &str = "1.8.10";

/// Most database names remembered for `SHOW DATABASES`; past it, new names are not recorded.
const MAX_DATABASES: usize = 10_000;
/// Longest database name remembered, in bytes.
const MAX_DATABASE_BYTES: usize = 255;
/// Largest `/query` form body read, in bytes: set-up statements are short.
const MAX_QUERY_BODY_BYTES: u64 = 64 * 1024;

/// The databases clients wrote to (`/write?db=`) or created: what `SHOW DATABASES` lists. Augur
/// has one keyspace whatever the database, so this is kept for the clients' checks alone, in
/// memory (a restart forgets it; the next write or `CREATE DATABASE` brings a name back).
#[derive(Debug)]
pub(super) struct Handshakes {
    databases: Mutex<BTreeSet<String>>,
    started: (SystemTime, Instant),
}

impl Handshakes {
    pub(super) fn new() -> Self {
        Self { databases: Mutex::default(), started: (SystemTime::now(), Instant::now()) }
    }

    /// Remembers `name` for `SHOW DATABASES`; false when the limit of names is reached.
    pub(super) fn record_database(&self, name: &str) -> bool {
        if name.is_empty() || name.len() > MAX_DATABASE_BYTES {
            return false;
        }
        let mut databases = self.databases.lock().unwrap_or_else(PoisonError::into_inner);
        if databases.contains(name) {
            return true;
        }
        if databases.len() >= MAX_DATABASES {
            return false;
        }
        databases.insert(name.to_owned())
    }

    fn databases(&self) -> Vec<String> {
        self.databases.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

/// The headers InfluxDB 1.x puts on every reply; clients read the version to tell 1.x from 2.x.
fn version_headers() -> [(HeaderName, HeaderValue); 3] {
    [
        (HeaderName::from_static("x-influxdb-version"), HeaderValue::from_static(INFLUXDB_VERSION)),
        (HeaderName::from_static("x-influxdb-build"), HeaderValue::from_static("OSS")),
        (HeaderName::from_static("x-augur-version"), HeaderValue::from_static(env!("CARGO_PKG_VERSION"))),
    ]
}

#[derive(Debug, Deserialize)]
pub(super) struct PingParams {
    verbose: Option<String>,
}

/// `GET`/`HEAD /ping`: 204 with the version headers; `?verbose=true` answers 200 with the version
/// as JSON, as InfluxDB 1.8 does.
pub(super) async fn ping(Query(params): Query<PingParams>) -> Response {
    if params.verbose.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        (StatusCode::OK, version_headers(), Json(json!({ "version": INFLUXDB_VERSION }))).into_response()
    } else {
        (StatusCode::NO_CONTENT, version_headers()).into_response()
    }
}

/// `GET /ready` and `/api/v2/ready`, shaped as InfluxDB 2.x answers: when it started and how long
/// it has been up.
pub(super) async fn ready(State(state): State<HttpState>) -> Response {
    let (since, up) = state.handshakes.started;
    let started = humantime_serde::re::humantime::format_rfc3339_micros(since).to_string();
    let body = json!({ "status": "ready", "started": started, "up": go_duration(up.elapsed()) });
    (StatusCode::OK, version_headers(), Json(body)).into_response()
}

/// `GET /api/v2/health`, shaped as InfluxDB 2.x answers it.
pub(super) async fn health_v2() -> Response {
    let body = json!({
        "name": "augur",
        "message": "ready for queries and writes",
        "status": "pass",
        "checks": [],
        "version": env!("CARGO_PKG_VERSION"),
        "commit": "",
    });
    (StatusCode::OK, version_headers(), Json(body)).into_response()
}

/// A duration as Go prints one (`1h2m3.5s`), as InfluxDB's `up` is.
fn go_duration(d: std::time::Duration) -> String {
    let (hours, minutes) = (d.as_secs() / 3600, d.as_secs() / 60 % 60);
    let seconds = format!("{}.{:09}", d.as_secs() % 60, d.subsec_nanos());
    let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct QueryParams {
    q: Option<String>,
    db: Option<String>,
}

/// `GET`/`POST /query`: the statements in `q` (query string, or a form body), separated by `;`.
/// 200 with one result per statement run, as InfluxDB 1.x answers; the first statement that
/// fails ends the request with its error in its result. `CREATE` needs the `write` scope.
pub(super) async fn query(
    State(state): State<HttpState>,
    Extension(principal): Extension<Arc<Principal>>,
    method: Method,
    Query(params): Query<QueryParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = if method == Method::POST && is_form(&headers) {
        let mut charge = Charge::new(state.inflight.clone());
        match body::read(body, MAX_QUERY_BODY_BYTES, state.config.body_read_timeout, &mut charge).await {
            Ok(bytes) => form_params(&bytes),
            Err(error) => return influxql_error(StatusCode::BAD_REQUEST, &error.to_string()),
        }
    } else {
        QueryParams::default()
    };
    let Some(text) = params.q.or(form.q).filter(|q| !q.trim().is_empty()) else {
        return influxql_error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    };
    let statements = match parse(&text) {
        Ok(statements) => statements,
        Err(message) => return influxql_error(StatusCode::BAD_REQUEST, &format!("error parsing query: {message}")),
    };
    if statements.iter().any(|s| matches!(s, Statement::CreateDatabase(_) | Statement::CreateRetentionPolicy))
        && !principal.allows(Scope::Write)
    {
        let message = format!("token `{}` may not CREATE: that needs the write scope", principal.name);
        return influxql_error(StatusCode::FORBIDDEN, &message);
    }
    let db = params.db.or(form.db);
    let mut results = Vec::with_capacity(statements.len());
    for (id, statement) in statements.into_iter().enumerate() {
        let result = run(&state, statement, db.as_deref());
        let failed = result.is_err();
        results.push(match result {
            Ok(Some(series)) => json!({ "statement_id": id, "series": [series] }),
            Ok(None) => json!({ "statement_id": id }),
            Err(error) => json!({ "statement_id": id, "error": error }),
        });
        if failed {
            break;
        }
    }
    (StatusCode::OK, version_headers(), Json(json!({ "results": results }))).into_response()
}

/// Runs one statement: its series, if it has one, or the error InfluxDB would put in its result.
fn run(state: &HttpState, statement: Statement, db: Option<&str>) -> Result<Option<Value>, String> {
    match statement {
        Statement::CreateDatabase(name) => {
            if state.handshakes.record_database(&name) {
                Ok(None)
            } else {
                Err(format!(
                    "database `{name}` not recorded: names are 1 to {MAX_DATABASE_BYTES} bytes, and at most \
                     {MAX_DATABASES} are kept (Augur has one keyspace: any name may be written to)"
                ))
            }
        }
        // Augur keeps data as `parquet.raw-retention` and `postgres.hot-retention` say, whatever
        // the policy a client asks for: accepted so clients that create one go on writing.
        Statement::CreateRetentionPolicy => Ok(None),
        Statement::ShowDatabases => {
            let values: Vec<_> = state.handshakes.databases().into_iter().map(|name| json!([name])).collect();
            let mut series = json!({ "name": "databases", "columns": ["name"] });
            if !values.is_empty() {
                series["values"] = Value::Array(values);
            }
            Ok(Some(series))
        }
        Statement::ShowRetentionPolicies(on) => match on.as_deref().or(db) {
            None => Err("database name required".to_owned()),
            Some(_) => Ok(Some(json!({
                "columns": ["name", "duration", "shardGroupDuration", "replicaN", "default"],
                "values": [["autogen", "0s", "168h0m0s", 1, true]],
            }))),
        },
        Statement::Other(keyword) => Err(format!(
            "Augur does not run {keyword} statements: /query answers only CREATE DATABASE, CREATE RETENTION \
             POLICY, SHOW DATABASES and SHOW RETENTION POLICIES. Read rollups and predictions with \
             GET /api/v1/rollups, /api/v1/latest and /api/v1/predictions (docs/postgres.md), raw points \
             and rollups from the Parquet tree with DuckDB, Polars or pyarrow (docs/parquet.md), or \
             PostgreSQL directly"
        )),
    }
}

/// An error reply as InfluxDB 1.x shapes it: `{"error": ...}`.
fn influxql_error(status: StatusCode, message: &str) -> Response {
    (status, version_headers(), Json(json!({ "error": message }))).into_response()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// The `q` and `db` of a form body (not UTF-8: none).
fn form_params(bytes: &[u8]) -> QueryParams {
    let mut params = QueryParams::default();
    for (key, value) in url_pairs(std::str::from_utf8(bytes).unwrap_or("")) {
        match key.as_str() {
            "q" => params.q = Some(value),
            "db" => params.db = Some(value),
            _ => {}
        }
    }
    params
}

/// The statements `/query` tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Statement {
    CreateDatabase(String),
    CreateRetentionPolicy,
    ShowDatabases,
    /// With the database of its `ON` clause, if any.
    ShowRetentionPolicies(Option<String>),
    /// Anything else, by its first keywords (`SELECT`, `SHOW MEASUREMENTS`, `DROP`, ...).
    Other(String),
}

/// One token of InfluxQL, as far as `/query` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word: a keyword or an identifier.
    Word(String),
    /// A `"double-quoted"` identifier, unescaped.
    Quoted(String),
    /// Anything else: strings, numbers, operators, punctuation (their text does not matter here).
    Other,
    Semicolon,
}

/// The statements of `text`, or what makes it unreadable.
fn parse(text: &str) -> Result<Vec<Statement>, String> {
    let tokens = tokenize(text)?;
    let mut statements = Vec::new();
    for words in tokens.split(|t| *t == Token::Semicolon).filter(|s| !s.is_empty()) {
        statements.push(statement(words)?);
    }
    if statements.is_empty() {
        return Err("no statement in the query".to_owned());
    }
    Ok(statements)
}

fn statement(tokens: &[Token]) -> Result<Statement, String> {
    let keyword = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        _ => String::new(),
    };
    let identifier = |i: usize, what: &str| match tokens.get(i) {
        Some(Token::Word(w) | Token::Quoted(w)) => Ok(w.clone()),
        _ => Err(format!("expected {what} after {}", keyword(i - 1))),
    };
    Ok(match (keyword(0).as_str(), keyword(1).as_str(), keyword(2).as_str()) {
        ("CREATE", "DATABASE", _) => Statement::CreateDatabase(identifier(2, "a database name")?),
        ("CREATE", "RETENTION", "POLICY") => {
            identifier(3, "a policy name")?;
            if keyword(4) != "ON" {
                return Err("expected ON <database> after the retention policy's name".to_owned());
            }
            identifier(5, "a database name")?;
            Statement::CreateRetentionPolicy
        }
        ("SHOW", "DATABASES", _) => Statement::ShowDatabases,
        ("SHOW", "RETENTION", "POLICIES") => match keyword(3).as_str() {
            "ON" => Statement::ShowRetentionPolicies(Some(identifier(4, "a database name")?)),
            _ => Statement::ShowRetentionPolicies(None),
        },
        ("", _, _) => return Err("a statement must start with a keyword".to_owned()),
        (first @ ("SHOW" | "CREATE" | "DROP" | "ALTER"), second, _) => Statement::Other(format!("{first} {second}")),
        (first, _, _) => Statement::Other(first.to_owned()),
    })
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ';' => tokens.push(Token::Semicolon),
            '"' | '\'' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                        Some((_, q)) if q == c => break,
                        Some((_, other)) => value.push(other),
                        None => return Err(format!("unterminated quote starting at char {}", at + 1)),
                    }
                }
                tokens.push(if c == '"' { Token::Quoted(value) } else { Token::Other });
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::from(c);
                while let Some((_, next)) = chars.next_if(|(_, n)| n.is_alphanumeric() || *n == '_') {
                    word.push(next);
                }
                tokens.push(Token::Word(word));
            }
            _ => tokens.push(Token::Other),
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_up_statements_are_read_with_quoted_and_bare_names() {
        assert_eq!(
            parse("CREATE DATABASE \"tele;graf\"; create database db2 WITH DURATION 1d").unwrap(),
            [Statement::CreateDatabase("tele;graf".into()), Statement::CreateDatabase("db2".into())]
        );
        assert_eq!(
            parse("CREATE RETENTION POLICY \"r\" ON \"a\" DURATION 1d REPLICATION 1 DEFAULT;SHOW DATABASES;").unwrap(),
            [Statement::CreateRetentionPolicy, Statement::ShowDatabases]
        );
        assert_eq!(
            parse("SHOW RETENTION POLICIES ON \"my \\\"db\\\"\"").unwrap(),
            [Statement::ShowRetentionPolicies(Some("my \"db\"".into()))]
        );
        assert_eq!(parse("show retention policies").unwrap(), [Statement::ShowRetentionPolicies(None)]);
    }

    #[test]
    fn other_statements_are_named_and_bad_text_refused() {
        assert_eq!(parse("SELECT * FROM cpu WHERE host = 'a;b'").unwrap(), [Statement::Other("SELECT".into())]);
        assert_eq!(parse("SHOW MEASUREMENTS").unwrap(), [Statement::Other("SHOW MEASUREMENTS".into())]);
        assert!(parse("CREATE DATABASE").unwrap_err().contains("expected a database name"));
        assert!(parse("SELECT 'open").unwrap_err().contains("unterminated quote starting at char 8"));
        assert!(parse(" ; ").unwrap_err().contains("no statement"));
        assert!(parse("CREATE RETENTION POLICY r DURATION 1d").unwrap_err().contains("ON <database>"));
    }

    #[test]
    fn up_reads_as_go_prints_durations() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(62)), "1m2s");
        assert_eq!(go_duration(Duration::from_secs(3600 * 26 + 5)), "26h0m5s");
    }

    #[test]
    fn database_names_are_kept_within_their_limits() {
        let handshakes = Handshakes::new();
        assert!(handshakes.record_database("b") && handshakes.record_database("a") && handshakes.record_database("a"));
        assert!(!handshakes.record_database("") && !handshakes.record_database(&"x".repeat(256)));
        assert_eq!(handshakes.databases(), ["a", "b"]);
    }
}
