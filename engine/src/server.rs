//! Wiring: builds the router, the pools and the pipelines from a [`Config`], opens the listeners,
//! and shuts everything down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use augur_ingest::http::HttpState;
use augur_ingest::shutdown::{shutdown_channel, ShutdownTrigger};
use augur_ingest::{Router, Writer};
use augur_storage::postgres::HotQuery;
use augur_storage::sink::Sink;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::api;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::metrics;
use crate::pipeline::{PipelineStats, Pipelines};

/// A running Augur: listeners open, pipelines draining.
#[derive(Debug)]
pub struct Server {
    http_addr: SocketAddr,
    tcp_addr: SocketAddr,
    trigger: ShutdownTrigger,
    listeners: Vec<JoinHandle<()>>,
    pipelines: Pipelines,
    writer: Writer,
}

/// What a server did over its life, read after it stopped.
#[derive(Debug)]
pub struct Summary {
    /// Per partition: what the pipelines processed.
    pub partitions: Vec<crate::pipeline::PartitionTotals>,
    /// Per partition: what the router admitted and refused.
    pub router: Vec<RouterTotals>,
}

/// A partition's router counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouterTotals {
    /// Points admitted.
    pub points_in: u64,
    /// Batches admitted.
    pub batches_in: u64,
    /// Batches refused (partition full).
    pub batches_rejected: u64,
}

impl Server {
    /// Starts Augur as `config` says, handing every output to `sink` and answering the query API
    /// from `hot` (when shards are configured). Must run inside a tokio runtime.
    ///
    /// # Errors
    /// When a listener cannot bind or a pool cannot start.
    pub async fn start(config: &Config, sink: Arc<dyn Sink>, hot: Option<HotQuery>) -> anyhow::Result<Self> {
        let partitions = config.router.resolved_partitions();
        let threads = config.engine.resolved_threads();
        let (router, receivers) = Router::new(partitions, config.router.queue_capacity_bytes);
        let router = Arc::new(router);
        let pipelines = Pipelines::start(receivers, &config.engine.pipeline(), sink.clone(), Arc::new(SystemClock))
            .context("starting the pipelines")?;
        let ingest_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("augur-ingest-{i}"))
            .build()
            .context("starting the ingest pool")?;
        let writer = Writer::new(router, &config.model, Arc::new(ingest_pool));

        let http = TcpListener::bind(config.http.addr)
            .await
            .with_context(|| format!("binding the HTTP listener to {}", config.http.addr))?;
        let tcp = TcpListener::bind(config.tcp.addr)
            .await
            .with_context(|| format!("binding the TCP listener to {}", config.tcp.addr))?;
        let (http_addr, tcp_addr) = (http.local_addr()?, tcp.local_addr()?);

        let (trigger, shutdown) = shutdown_channel();
        let resolutions = config.engine.pipeline().resolutions;
        let app = augur_ingest::http::routes(HttpState::new(writer.clone(), config.http.clone()))
            .route(
                "/metrics",
                get({
                    let (writer, stats) = (writer.clone(), pipelines.stats().clone());
                    move || async move { metrics::render(&writer, &stats, sink.as_ref()) }
                }),
            )
            .merge(api::routes(hot, resolutions));
        let http_config = config.http.clone();
        let listeners = vec![
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move { augur_ingest::http::serve(http, app, &http_config, shutdown).await }
            }),
            tokio::spawn(augur_ingest::tcp::serve(tcp, writer.clone(), config.tcp.clone(), shutdown)),
        ];
        info!(%http_addr, %tcp_addr, partitions, threads, "Augur is listening.");
        Ok(Self { http_addr, tcp_addr, trigger, listeners, pipelines, writer })
    }

    /// The bound HTTP address (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The pipelines' published totals.
    pub fn pipeline_stats(&self) -> &Arc<PipelineStats> {
        self.pipelines.stats()
    }

    /// The write path (for counters).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Stops accepting, lets requests in flight finish, drains every partition and stops.
    ///
    /// # Errors
    /// When a listener task had panicked; the partitions are drained all the same, so nothing
    /// acknowledged is dropped on the way out.
    pub async fn shutdown(self) -> anyhow::Result<Summary> {
        self.trigger.trigger();
        let mut panicked = 0;
        for listener in self.listeners {
            if let Err(error) = listener.await {
                error!(%error, "A listener task panicked.");
                panicked += 1;
            }
        }
        let router = self
            .writer
            .router()
            .stats()
            .iter()
            .map(|s| RouterTotals {
                points_in: s.points_in.load(std::sync::atomic::Ordering::Relaxed),
                batches_in: s.batches_in.load(std::sync::atomic::Ordering::Relaxed),
                batches_rejected: s.batches_rejected.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        // The listeners are gone; dropping the last writer drops the router's senders, so the
        // pipelines drain what is queued and stop.
        let stats = self.pipelines.stats().clone();
        drop(self.writer);
        let pipelines = self.pipelines;
        tokio::task::spawn_blocking(move || pipelines.join()).await?;
        info!("Augur stopped.");
        if panicked > 0 {
            anyhow::bail!("{panicked} listener task(s) panicked; see the log");
        }
        Ok(Summary { partitions: stats.snapshot(), router })
    }
}
