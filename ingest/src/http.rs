//! The HTTP listener: InfluxDB-compatible write endpoints, health and ping.
//!
//! [`routes`] gives the ingest endpoints as an axum router the engine extends with its own; [`serve`]
//! runs the accept loop with a connection cap, header and body timeouts, and graceful shutdown.

mod body;
mod reply;
mod write;

use std::sync::Arc;

use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::config::HttpConfig;
use crate::listener::accept_loop;
use crate::shutdown::Shutdown;
use crate::write::Writer;

pub use reply::error_response;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct HttpState {
    writer: Writer,
    config: Arc<HttpConfig>,
    /// Bytes of request bodies held in memory, in KiB permits: bounds ingest memory under any
    /// number of concurrent writers.
    inflight: Arc<Semaphore>,
}

impl HttpState {
    /// State for the handlers.
    pub fn new(writer: Writer, config: HttpConfig) -> Self {
        let inflight_kib = usize::try_from(config.max_inflight_bytes / 1024).unwrap_or(usize::MAX);
        Self {
            writer,
            inflight: Arc::new(Semaphore::new(inflight_kib.min(Semaphore::MAX_PERMITS))),
            config: Arc::new(config),
        }
    }
}

/// The ingest endpoints: `POST /write`, `POST /api/v2/write`, `GET /health`, `GET /ping`, plus
/// JSON 404 and 405 replies.
pub fn routes(state: HttpState) -> axum::Router {
    axum::Router::new()
        .route("/write", post(write::write_v1))
        .route("/api/v2/write", post(write::write_v2))
        .route("/health", get(reply::health))
        .route("/ping", get(reply::ping).head(reply::ping))
        .fallback(reply::not_found)
        .method_not_allowed_fallback(reply::method_not_allowed)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown`, then lets requests in flight finish.
pub async fn serve(listener: TcpListener, app: axum::Router, config: &HttpConfig, shutdown: Shutdown) {
    let header_read_timeout = config.header_read_timeout;
    accept_loop(listener, "http", config.max_connections, shutdown, |stream, peer, mut shutdown| {
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
        async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
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
    })
    .await
}
