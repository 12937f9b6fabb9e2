//! The PostgreSQL sink: splits each rollup batch by shard (the [`ShardMap`]) and hands each part to
//! that shard's writer task. A slow or failed shard never holds up the others: its writer spools;
//! only a full spool makes [`Sink::rollups`] wait, which backs up into ingest as 503s.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use arrow_array::{RecordBatch, TimestampNanosecondArray, UInt32Array, UInt64Array};
use tokio::sync::mpsc;

use super::config::PostgresConfig;
use super::shard::{Message, ShardStats, ShardWriter, WriterSettings};
use super::shard_map::ShardMap;
use super::spool::Spool;
use crate::error::{Result, StorageError};
use crate::exposition;
use crate::schema::{text_column, typed_column, RawKey};
use crate::sink::{Epoch, Sink, SinkError};

/// Writes rollups to the shards of `[postgres]`.
#[derive(Debug)]
pub struct PostgresSink {
    map: ShardMap,
    shards: Vec<ShardHandle>,
}

#[derive(Debug)]
struct ShardHandle {
    name: String,
    /// Bounded: a writer that cannot keep up (its spool full) makes the pipelines wait.
    messages: mpsc::Sender<Message>,
    stats: Arc<ShardStats>,
    /// Set at the final flush: the writer then spools past its bound rather than wait.
    draining: Arc<AtomicBool>,
}

/// Rows per batch sent to a shard: bounds one attempt's time and one spool file.
const MAX_BATCH_ROWS: usize = 100_000;

impl PostgresSink {
    /// Opens the shard map and the spools under `data_dir` and starts one writer task per shard
    /// on `runtime`. Does not wait for any shard: one that is down gets its batches spooled.
    ///
    /// A changed shard list starts a new epoch at `epoch_start` (ns): it must lie after every
    /// window start a previous run may have written (the engine passes now + `max-future`), so no
    /// window is ever written under two epochs.
    ///
    /// # Errors
    /// When the shard map or a spool cannot be opened, or the map lists a shard the config lacks.
    pub fn start(
        config: &PostgresConfig,
        data_dir: &Path,
        epoch_start: i64,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self> {
        let names: Vec<String> = config.shards.iter().map(|s| s.name.clone()).collect();
        let map = ShardMap::open(data_dir, &names, &config.region_shards, epoch_start)?;
        let mut shards = Vec::new();
        for shard in &config.shards {
            let connect = shard.url.parse().map_err(|e| {
                StorageError::Config(format!("postgres shard {:?}: bad connection string: {e}", shard.name))
            })?;
            let folder = data_dir.join("spool").join(&shard.name);
            let spool = Spool::open(&folder, config.spool_max_bytes)?;
            let rejected = Spool::open(&folder.join("rejected"), u64::MAX)?;
            let stats = Arc::new(ShardStats::default());
            let settings = WriterSettings {
                name: shard.name.clone(),
                connect,
                timeout: config.timeout,
                max_retry_interval: config.max_retry_interval,
                hot_retention: config.hot_retention,
            };
            let (messages, receiver) = mpsc::channel(config.queue_batches);
            let draining = Arc::new(AtomicBool::new(false));
            let writer = ShardWriter::new(settings, (spool, rejected), receiver, stats.clone(), draining.clone());
            runtime.spawn(writer.run());
            shards.push(ShardHandle { name: shard.name.clone(), messages, stats, draining });
        }
        Ok(Self { map, shards })
    }

    /// Each shard's name and counters.
    pub fn shard_stats(&self) -> impl Iterator<Item = (&str, &ShardStats)> {
        self.shards.iter().map(|s| (s.name.as_str(), s.stats.as_ref()))
    }

    fn send(&self, shard: &ShardHandle, message: Message) -> Result<(), SinkError> {
        // Called from pipeline threads, never from the async runtime.
        shard
            .messages
            .blocking_send(message)
            .map_err(|_| SinkError::Fatal(format!("the writer of postgres shard {:?} has stopped", shard.name)))
    }
}

impl PostgresSink {
    /// Splits `batch` by shard (series, region and the time in column `time`) and sends each part
    /// to its writer, in chunks.
    fn send_by_shard(&self, batch: RecordBatch, time: &str) -> Result<(), SinkError> {
        let schema_error = |e: StorageError| SinkError::Fatal(e.to_string());
        let ids = typed_column::<UInt64Array>(&batch, "series_id").map_err(schema_error)?;
        let starts = typed_column::<TimestampNanosecondArray>(&batch, time).map_err(schema_error)?;
        let regions = text_column(&batch, "region").map_err(schema_error)?;
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); self.shards.len()];
        for row in 0..batch.num_rows() {
            rows_of[self.map.shard_of(ids.value(row), regions.value(row), starts.value(row))].push(row as u32);
        }
        for (shard, rows) in self.shards.iter().zip(rows_of) {
            if rows.is_empty() {
                continue;
            }
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))
                    .map_err(|e| SinkError::Fatal(e.to_string()))?
            };
            for start in (0..part.num_rows()).step_by(MAX_BATCH_ROWS) {
                let chunk = part.slice(start, MAX_BATCH_ROWS.min(part.num_rows() - start));
                self.send(shard, Message::Batch(chunk))?;
            }
        }
        Ok(())
    }

    /// Sends `message` to every shard's writer, then waits for each to answer.
    fn wait_for_every_shard(&self, message: fn(SyncSender<()>) -> Message) -> Result<(), SinkError> {
        let mut answers = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            self.send(shard, message(done))?;
            answers.push((shard, wait));
        }
        for (shard, wait) in answers {
            wait.recv()
                .map_err(|_| SinkError::Fatal(format!("the writer of postgres shard {:?} has stopped", shard.name)))?;
        }
        Ok(())
    }
}

impl Sink for PostgresSink {
    /// Raw points live in Parquet only.
    fn raw(&self, _epoch: Epoch, _key: &RawKey, _batch: RecordBatch) -> Result<(), SinkError> {
        Ok(())
    }

    /// Rows of any epoch go out at once: upserts make the rows a replay computes again harmless.
    fn rollups(&self, _epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.send_by_shard(batch, "window_start")
    }

    /// Each event on the shard its series' windows at its start go to.
    fn predictions(&self, _epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        self.send_by_shard(batch, "start")
    }

    /// Waits until every batch taken so far is committed or spooled (durable either way).
    fn checkpoint(&self, _epoch: Epoch) -> Result<(), SinkError> {
        self.wait_for_every_shard(Message::Sync)
    }

    /// From here on a shard that is down has its spool grow past the bound rather than hold the
    /// stop up.
    fn stopping(&self) {
        for shard in &self.shards {
            shard.draining.store(true, Ordering::Relaxed);
        }
    }

    /// As [`Sink::checkpoint`], after trying to empty the spools of reachable shards (at shutdown).
    fn flush(&self) -> Result<(), SinkError> {
        self.stopping();
        self.wait_for_every_shard(Message::Flush)
    }

    fn shards(&self) -> Vec<crate::sink::ShardHealth> {
        self.shards
            .iter()
            .map(|shard| crate::sink::ShardHealth {
                shard: shard.name.clone(),
                breaker_open: shard.stats.breaker_open.load(Ordering::Relaxed),
                spool_batches: shard.stats.spool_batches.load(Ordering::Relaxed),
                rows_written_total: shard.stats.rows_written.load(Ordering::Relaxed),
            })
            .collect()
    }

    fn render_metrics(&self, out: &mut String) {
        type Read = fn(&ShardStats) -> u64;
        let series: [(&str, &str, &str, Read); 9] = [
            ("augur_postgres_rows_written_total", "counter", "Rollup rows committed per shard.", |s| {
                s.rows_written.load(Ordering::Relaxed)
            }),
            ("augur_postgres_batches_written_total", "counter", "Batches committed per shard.", |s| {
                s.batches_written.load(Ordering::Relaxed)
            }),
            ("augur_postgres_batches_spooled_total", "counter", "Batches spooled while a shard was down.", |s| {
                s.batches_spooled.load(Ordering::Relaxed)
            }),
            ("augur_postgres_batches_replayed_total", "counter", "Spooled batches committed later.", |s| {
                s.batches_replayed.load(Ordering::Relaxed)
            }),
            (
                "augur_postgres_batches_rejected_total",
                "counter",
                "Batches a shard refused as invalid (kept on disk).",
                |s| s.batches_rejected.load(Ordering::Relaxed),
            ),
            ("augur_postgres_write_errors_total", "counter", "Failed attempts to reach or write a shard.", |s| {
                s.write_errors.load(Ordering::Relaxed)
            }),
            ("augur_postgres_breaker_open", "gauge", "1 while a shard's circuit breaker is open.", |s| {
                u64::from(s.breaker_open.load(Ordering::Relaxed))
            }),
            ("augur_postgres_spool_batches", "gauge", "Batches waiting in a shard's spool.", |s| {
                s.spool_batches.load(Ordering::Relaxed)
            }),
            ("augur_postgres_spool_bytes", "gauge", "Bytes in a shard's spool.", |s| {
                s.spool_bytes.load(Ordering::Relaxed)
            }),
        ];
        for (name, kind, help, read) in series {
            exposition::header(out, name, kind, help);
            for shard in &self.shards {
                exposition::sample(out, name, &[("shard", &shard.name)], read(&shard.stats));
            }
        }
    }
}
