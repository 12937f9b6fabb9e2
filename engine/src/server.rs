//! Wiring: builds the router, the pools and the pipelines from a [`Config`], restores the last
//! checkpoint and replays the write-ahead log after it, opens the listeners, and shuts everything
//! down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use augur_ingest::auth::{require, Auth};
use augur_ingest::config::Scope;
use augur_ingest::http::HttpState;
use augur_ingest::limits::Limits;
use augur_ingest::shutdown::{shutdown_channel, ShutdownTrigger};
use augur_ingest::tcp::Lines;
use augur_ingest::wal::group::GroupCommit;
use augur_ingest::{Router, Writer};
use augur_storage::postgres::HotQuery;
use augur_storage::sink::Sink;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::api;
use crate::checkpoint::{self, Checkpointer};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::metrics::Durability;
use crate::ops::{self, Ops};
use crate::pipeline::{Partitions, PipelineStats, Pipelines};
use crate::predict::risk::RiskBoard;
use crate::recovery::{self, Recovered};

/// A running Augur: listeners open, pipelines draining.
pub struct Server {
    http_addr: SocketAddr,
    tcp_addr: SocketAddr,
    graphite_addr: Option<SocketAddr>,
    statsd_addr: Option<SocketAddr>,
    trigger: ShutdownTrigger,
    listeners: Vec<JoinHandle<()>>,
    pipelines: Pipelines,
    writer: Writer,
    checkpointer: Checkpointer,
    sink: Arc<dyn Sink>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("http_addr", &self.http_addr).field("tcp_addr", &self.tcp_addr).finish()
    }
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
    /// Starts Augur as `config` says, from what `recovered` found: restores the partitions'
    /// states, replays the log after the checkpoint, then opens the listeners. Every output goes
    /// to `sink` (opened after the same checkpoint); the query API answers from `hot` (when shards
    /// are configured). Must run inside a tokio runtime.
    ///
    /// # Errors
    /// When the checkpoint does not fit the config (another partition count or resolutions), the
    /// replay fails, a listener cannot bind or a pool cannot start.
    pub async fn start(
        config: &Config,
        sink: Arc<dyn Sink>,
        hot: Option<HotQuery>,
        recovered: Recovered,
    ) -> anyhow::Result<Self> {
        let partitions = config.router.resolved_partitions();
        let threads = config.engine.resolved_threads();
        let (router, receivers) = Router::new(partitions, config.router.queue_capacity_bytes);
        let router = Arc::new(router);
        let (snapshots_tx, snapshots) = crossbeam_channel::unbounded();
        let risk =
            Arc::new(RiskBoard::new(i64::try_from(config.predict.risk_half_life.as_nanos()).unwrap_or(i64::MAX)));
        let mut tasks = Partitions::new(receivers, &config.pipeline(), sink.clone())
            .with_checkpoints(&snapshots_tx)
            .with_risk(&risk);
        drop(snapshots_tx);
        let Recovered { checkpoint, wal, records, stats: recovery_stats } = recovered;
        let committed = checkpoint.as_ref().map_or(0, |c| c.epoch);
        if let Some(checkpoint) = &checkpoint {
            let dir = config.server.state_dir();
            let mut states = Vec::with_capacity(checkpoint.partitions.len());
            for index in 0..checkpoint.partitions.len() {
                let bytes = checkpoint.partition_bytes(&dir, index)?;
                let state = tasks.decode_state(&bytes).with_context(|| format!("restoring partition {index}"))?;
                states.push(state);
            }
            tasks.restore(checkpoint.epoch, states);
        }
        let pipelines = Pipelines::start(tasks, Arc::new(SystemClock)).context("starting the pipelines")?;
        let ingest_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("augur-ingest-{i}"))
            .build()
            .context("starting the ingest pool")?;
        let writer = Writer::new(router.clone(), &config.model, Arc::new(ingest_pool));

        // Before any listener opens: what the log holds after the checkpoint goes through the
        // pipelines again, in log order.
        let replayed = !records.is_empty();
        let recovery_stats = Arc::new(recovery_stats);
        tokio::task::spawn_blocking({
            let (writer, stats) = (writer.clone(), recovery_stats.clone());
            let cuts: Vec<u64> = checkpoint.iter().flat_map(|c| &c.partitions).map(|p| p.sequence).collect();
            move || recovery::replay(&writer, records, &cuts, &stats)
        })
        .await??;
        let log = Arc::new(GroupCommit::start(wal, config.wal.flush_interval).context("starting the log")?);
        let writer = writer.with_log(log.clone());
        let checkpointer = Checkpointer::start(checkpoint::Parts {
            log: log.clone(),
            router,
            sink: sink.clone(),
            dir: config.server.state_dir(),
            snapshots,
            committed,
            interval: config.wal.checkpoint_interval,
            log_growth: config.wal.max_bytes / 4,
            replayed,
        })
        .context("starting the checkpointer")?;
        let durability = Durability {
            log: log.stats().clone(),
            checkpoints: checkpointer.stats().clone(),
            recovery: recovery_stats,
        };

        let tls = match (&config.http.tls_cert, &config.http.tls_key) {
            (Some(cert), Some(key)) => Some(augur_ingest::tls::acceptor(cert, key)?),
            _ => None,
        };
        let http = augur_ingest::listener::bind(config.http.addr)
            .with_context(|| format!("binding the HTTP listener to {}", config.http.addr))?;
        let tcp = augur_ingest::listener::bind(config.tcp.addr)
            .with_context(|| format!("binding the TCP listener to {}", config.tcp.addr))?;
        let (http_addr, tcp_addr) = (http.local_addr()?, tcp.local_addr()?);
        let graphite = match config.graphite.addr {
            Some(addr) => Some(
                augur_ingest::listener::bind(addr)
                    .with_context(|| format!("binding the Graphite listener to {addr}"))?,
            ),
            None => None,
        };
        let graphite_addr = graphite.as_ref().map(TcpListener::local_addr).transpose()?;
        let statsd = match config.statsd.addr {
            Some(addr) => Some(
                std::net::UdpSocket::bind(addr).with_context(|| format!("binding the StatsD listener to {addr}"))?,
            ),
            None => None,
        };
        let statsd_addr = statsd.as_ref().map(std::net::UdpSocket::local_addr).transpose()?;

        let beyond_loopback = !http_addr.ip().is_loopback() || !tcp_addr.ip().is_loopback();
        if !config.auth.enabled && beyond_loopback {
            warn!(%http_addr, %tcp_addr, "Authentication is off (auth.enabled = false) and a listener is reachable beyond loopback: anyone who can connect may write, read and operate this server.");
        }
        let auth = Arc::new(Auth::new(&config.auth));
        let limits = Arc::new(Limits::new(&config.limits));
        let http_state =
            HttpState::new(&writer, config.http.clone(), config.otlp.clone(), auth.clone(), limits.clone());
        let (tcp_writer, graphite_writer, statsd_writer) =
            (writer.with_own_stats(), writer.with_own_stats(), writer.with_own_stats());
        let mut writers = http_state.writers();
        writers.extend([
            ("tcp", tcp_writer.clone()),
            ("graphite", graphite_writer.clone()),
            ("statsd", statsd_writer.clone()),
            ("replay", writer.clone()),
        ]);
        let (trigger, shutdown) = shutdown_channel();
        let ops = Ops {
            writers,
            pipelines: pipelines.stats().clone(),
            durability,
            risk: risk.clone(),
            sink: sink.clone(),
            meter: Arc::default(),
            requests: Arc::default(),
            auth: auth.clone(),
            started: std::time::Instant::now(),
        };
        let meter = tokio::spawn(meter_loop(ops.clone(), shutdown.clone()));
        let reads = api::routes(hot, config.pipeline().resolutions).merge(api::risk_routes(risk));
        let app = augur_ingest::http::routes(http_state)
            .merge(require(reads, auth.clone(), Scope::Read))
            .merge(require(ops::routes(ops.clone()), auth, Scope::Admin))
            .layer(axum::middleware::from_fn_with_state(ops.requests.clone(), ops::requests::record));
        let http_config = config.http.clone();
        let mut listeners = vec![
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move { augur_ingest::http::serve(http, app, &http_config, tls, shutdown).await }
            }),
            tokio::spawn(augur_ingest::tcp::serve(
                tcp,
                tcp_writer,
                (config.tcp.clone(), Lines::LineProtocol),
                limits.clone(),
                shutdown.clone(),
            )),
            meter,
        ];
        if let Some(graphite) = graphite {
            // Validated with the configuration.
            let templates = config.graphite.templates().map_err(|problems| anyhow::anyhow!(problems.join("; ")))?;
            let lines = Lines::Graphite(Arc::new(templates));
            let tcp = config.tcp.clone();
            listeners.push(tokio::spawn(augur_ingest::tcp::serve(
                graphite,
                graphite_writer,
                (tcp, lines),
                limits.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(socket) = statsd {
            let (statsd_config, runtime) = (config.statsd.clone(), tokio::runtime::Handle::current());
            listeners.push(tokio::task::spawn_blocking(move || {
                let served = augur_ingest::udp::serve(socket, statsd_writer, &statsd_config, limits, runtime, shutdown);
                if let Err(error) = served {
                    error!(%error, "The StatsD listener stopped.");
                }
            }));
        }
        info!(%http_addr, %tcp_addr, partitions, threads, "Augur is listening.");
        Ok(Self {
            http_addr,
            tcp_addr,
            graphite_addr,
            statsd_addr,
            trigger,
            listeners,
            pipelines,
            writer,
            checkpointer,
            sink,
        })
    }

    /// The bound HTTP address (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The bound Graphite address, when that listener is on.
    pub fn graphite_addr(&self) -> Option<SocketAddr> {
        self.graphite_addr
    }

    /// The bound StatsD address (UDP), when that listener is on.
    pub fn statsd_addr(&self) -> Option<SocketAddr> {
        self.statsd_addr
    }

    /// The pipelines' published totals.
    pub fn pipeline_stats(&self) -> &Arc<PipelineStats> {
        self.pipelines.stats()
    }

    /// The write path (for counters).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Stops accepting, lets requests in flight finish, takes a last checkpoint (with the open
    /// windows, so a restart continues them), then drains every partition, emits the open windows
    /// as partial and stops.
    ///
    /// # Errors
    /// When a listener task had panicked or the last checkpoint failed; the partitions are drained
    /// all the same, and what the checkpoint missed is replayed from the log at the next start.
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
        // Nothing more is appended: the last checkpoint covers the whole log.
        self.sink.stopping();
        let checkpointed = tokio::task::spawn_blocking(move || self.checkpointer.finish()).await?;
        if let Err(error) = &checkpointed {
            error!(error = format!("{error:#}"), "The last checkpoint failed.");
        }
        // Dropping the last writer drops the log and the router's senders, so the pipelines drain
        // what is queued and stop.
        let stats = self.pipelines.stats().clone();
        drop(self.writer);
        let pipelines = self.pipelines;
        tokio::task::spawn_blocking(move || pipelines.join()).await?;
        info!("Augur stopped.");
        if panicked > 0 {
            anyhow::bail!("{panicked} listener task(s) panicked; see the log");
        }
        checkpointed?;
        Ok(Summary { partitions: stats.snapshot(), router })
    }
}

/// Samples the counters for the rates of `/api/v1/partitions` and the status page, until shutdown.
async fn meter_loop(ops: Ops, mut shutdown: augur_ingest::shutdown::Shutdown) {
    let mut every = tokio::time::interval(ops::meter::EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => ops.meter.sample(&ops.writers, &ops.pipelines),
            () = shutdown.wait() => return,
        }
    }
}
