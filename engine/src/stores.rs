//! The stores outputs go to, opened from the config: Parquet (cold, everything) and PostgreSQL
//! (hot, rollups), behind one [`Sink`].

use std::sync::Arc;

use anyhow::Context;
use augur_storage::parquet::ParquetSink;
use augur_storage::postgres::{HotQuery, PostgresSink};
use augur_storage::sink::{Epoch, FanOut, NullSink, Sink};

use crate::config::Config;
use crate::predict::webhook::WebhookSink;

/// The opened stores.
pub struct Stores {
    /// Where the pipelines hand their output.
    pub sink: Arc<dyn Sink>,
    /// The Parquet sink, when `[parquet] enabled`.
    pub parquet: Option<Arc<ParquetSink>>,
    /// The PostgreSQL sink, when shards are configured.
    pub postgres: Option<Arc<PostgresSink>>,
    /// Reads of the hot tier, when shards are configured.
    pub hot: Option<HotQuery>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("parquet", &self.parquet).field("postgres", &self.postgres).finish()
    }
}

impl Stores {
    /// Opens what `config` enables, plus `extra` sinks (the demo keeps rollups in memory), after
    /// the checkpoint of epoch `committed`; starts the background work (compaction, shard
    /// writers) on `runtime`.
    ///
    /// # Errors
    /// When a store cannot be opened (unwritable data dir, a shard map that lost a shard).
    pub fn open(
        config: &Config,
        runtime: &tokio::runtime::Handle,
        extra: Vec<Arc<dyn Sink>>,
        committed: Epoch,
    ) -> anyhow::Result<Self> {
        let mut sinks = extra;
        let parquet = if config.parquet.enabled {
            let parquet = Arc::new(ParquetSink::open(config.server.parquet_dir(), config.parquet.clone(), committed)?);
            parquet.start_compactor(config.parquet.compact_every, config.parquet.compact_after)?;
            sinks.push(parquet.clone());
            Some(parquet)
        } else {
            None
        };
        if let Some(url) = &config.predict.webhook {
            sinks.push(Arc::new(WebhookSink::start(url, config.predict.webhook_timeout, runtime)?));
        }
        let (postgres, hot) = if config.postgres.enabled() {
            // A new shard epoch starts past every window a previous run may have written: points
            // are accepted up to `max-future` ahead of their arrival.
            let max_future = i64::try_from(config.model.max_future.as_nanos()).unwrap_or(i64::MAX);
            let epoch_start = augur_storage::now_nanos().saturating_add(max_future);
            let sink = Arc::new(
                PostgresSink::start(&config.postgres, &config.server.data_dir, epoch_start, runtime)
                    .context("starting the PostgreSQL sink")?,
            );
            sinks.push(sink.clone());
            (Some(sink), Some(HotQuery::new(&config.postgres)?))
        } else {
            (None, None)
        };
        let sink: Arc<dyn Sink> = match sinks.len() {
            0 => Arc::new(NullSink::default()),
            1 => sinks.remove(0),
            _ => Arc::new(FanOut(sinks)),
        };
        Ok(Self { sink, parquet, postgres, hot })
    }
}
