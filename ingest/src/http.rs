//! The HTTP listener: InfluxDB-compatible write endpoints, health and ping.
//!
//! [`routes`] gives the ingest endpoints as an axum router the engine extends with its own; [`serve`]
//! runs the accept loop with a connection cap, optional TLS, header and body timeouts, and
//! graceful shutdown.

mod body;
mod influx;
mod protocols;
mod reply;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::auth::{self, Auth};
use crate::config::{HttpConfig, OtlpConfig, Scope};
use crate::limits::Limits;
use crate::listener::accept_loop;
use crate::shutdown::Shutdown;
use crate::write::Writer;

pub use influx::INFLUXDB_VERSION;
pub use reply::error_response;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// One per [`Protocol`], so each has its own counters.
    writers: Arc<[Writer]>,
    config: Arc<HttpConfig>,
    otlp: Arc<OtlpConfig>,
    /// Bytes of request bodies held in memory, in KiB permits: bounds ingest memory under any
    /// number of concurrent writers.
    inflight: Arc<Semaphore>,
    auth: Arc<Auth>,
    limits: Arc<Limits>,
    /// What InfluxDB clients check besides writing: the databases written to, the start time.
    handshakes: Arc<influx::Handshakes>,
}

impl HttpState {
    /// State for the handlers: writes go to `writer` once `auth` let them in and within `limits`;
    /// OTLP attributes become tags as `otlp` says.
    pub fn new(writer: &Writer, config: HttpConfig, otlp: OtlpConfig, auth: Arc<Auth>, limits: Arc<Limits>) -> Self {
        let inflight_kib = usize::try_from(config.max_inflight_bytes / 1024).unwrap_or(usize::MAX);
        Self {
            writers: Protocol::ALL.iter().map(|_| writer.with_own_stats()).collect(),
            inflight: Arc::new(Semaphore::new(inflight_kib.min(Semaphore::MAX_PERMITS))),
            config: Arc::new(config),
            otlp: Arc::new(otlp),
            auth,
            limits,
            handshakes: Arc::new(influx::Handshakes::new()),
        }
    }
}

impl HttpState {
    fn writer(&self, protocol: Protocol) -> &Writer {
        &self.writers[protocol as usize]
    }

    /// Each protocol's writer, named as `/metrics` labels it.
    pub fn writers(&self) -> Vec<(&'static str, Writer)> {
        Protocol::ALL.iter().map(|&p| (p.label(), self.writer(p).clone())).collect()
    }
}

/// The protocols the HTTP listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// InfluxDB line protocol.
    Influx,
    Prometheus,
    Otlp,
    Collectd,
    JsonLines,
}

impl Protocol {
    const ALL: [Self; 5] = [Self::Influx, Self::Prometheus, Self::Otlp, Self::Collectd, Self::JsonLines];

    /// The `protocol` label of its counters.
    fn label(self) -> &'static str {
        match self {
            // Line protocol over HTTP was the only HTTP protocol when the label was chosen.
            Self::Influx => "http",
            Self::Prometheus => "prometheus",
            Self::Otlp => "otlp",
            Self::Collectd => "collectd",
            Self::JsonLines => "jsonlines",
        }
    }

    /// Its name in error messages.
    fn describe(self) -> &'static str {
        match self {
            Self::Influx => "line protocol",
            Self::Prometheus => "Prometheus remote write",
            Self::Otlp => "OTLP/HTTP metrics",
            Self::Collectd => "collectd write_http",
            Self::JsonLines => "JSON lines",
        }
    }
}

/// The ingest endpoints: the writes (with the `write` scope); `/query` for InfluxDB clients'
/// set-up statements (with `read`); `/health`, `/ping`, `/ready`, `/api/v2/ready`,
/// `/api/v2/health` (open to all); plus JSON 404 and 405 replies.
pub fn routes(state: HttpState) -> axum::Router {
    let writes = axum::Router::new()
        .route("/write", post(write::write_v1))
        .route("/api/v2/write", post(write::write_v2))
        .route("/api/v1/write", post(protocols::prometheus))
        .route("/api/v1/points", post(protocols::json_lines))
        .route("/v1/metrics", post(protocols::otlp))
        .route("/collectd", post(protocols::collectd))
        .with_state(state.clone());
    let queries = axum::Router::new().route("/query", get(influx::query).post(influx::query)).with_state(state.clone());
    let open = axum::Router::new()
        .route("/health", get(reply::health))
        .route("/ping", get(influx::ping).head(influx::ping))
        .route("/ready", get(influx::ready))
        .route("/api/v2/ready", get(influx::ready))
        .route("/api/v2/health", get(influx::health_v2))
        .with_state(state.clone());
    auth::require(writes, state.auth.clone(), Scope::Write)
        .merge(auth::require(queries, state.auth.clone(), Scope::Read))
        .merge(open)
        .fallback(reply::not_found)
        .method_not_allowed_fallback(reply::method_not_allowed)
}

/// Serves `app` on `listener` until `shutdown`, then lets requests in flight finish. With `tls`,
/// every connection is a TLS handshake first (bounded by the header timeout).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: &HttpConfig,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
) {
    let limits = (config.header_read_timeout, config.max_header_bytes);
    accept_loop(listener, "http", config.max_connections, shutdown, |stream, peer, shutdown| {
        let _ = stream.set_nodelay(true);
        let (app, tls) = (app.clone(), tls.clone());
        async move {
            let Some(tls) = tls else {
                return serve_connection(stream, peer, app, limits, shutdown).await;
            };
            match tokio::time::timeout(limits.0, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, peer, app, limits, shutdown).await,
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed."),
                Err(_) => debug!(%peer, "TLS handshake timed out."),
            }
        }
    })
    .await
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or `shutdown`.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    app: axum::Router,
    (header_read_timeout, max_header_bytes): (Duration, usize),
    mut shutdown: Shutdown,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The client's address travels with each request, as axum's `ConnectInfo`: anonymous clients
    // are rate-limited by it, and refusals are logged with it.
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            // hyper bounds the head only loosely (a head read whole is parsed whatever its size):
            // the limit is kept here, before any handler runs.
            let head: usize = request.uri().path().len()
                + request.uri().query().map_or(0, str::len)
                + request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
            if head > max_header_bytes {
                return Ok(error_response(
                    axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request header fields too large",
                    format!("the request head is {head} bytes, over the limit of {max_header_bytes} (http.max-header-bytes)"),
                ));
            }
            tower::Service::call(&mut app, request).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.wait() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%peer, %error, "HTTP connection ended with an error.");
    }
}
