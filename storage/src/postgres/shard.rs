//! One shard's writer: a tokio task that owns the shard's write connection, its circuit breaker
//! and its spool. Batches arrive in order on a bounded channel; each goes to PostgreSQL when the
//! shard answers and nothing older waits in the spool, else to the spool. When the breaker's
//! retry time comes, the spool is replayed oldest first, each file removed once committed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{BooleanArray, RecordBatch, TimestampNanosecondArray};
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};
use tracing::{error, info, warn};

use super::copy::{self, WriteError};
use super::migrations::{self, day_start};
use super::spool::Spool;
use crate::schema::typed_column;

/// What travels to a shard's writer, in order.
#[derive(Debug)]
pub(crate) enum Message {
    /// Rollup rows that belong to this shard.
    Batch(RecordBatch),
    /// Answered once every earlier batch is in PostgreSQL or the spool.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// A shard's counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Rows committed.
    pub rows_written: AtomicU64,
    /// Batches committed (replays included).
    pub batches_written: AtomicU64,
    /// Batches that went to the spool.
    pub batches_spooled: AtomicU64,
    /// Spooled batches committed later.
    pub batches_replayed: AtomicU64,
    /// Failed attempts to reach or write the shard.
    pub write_errors: AtomicU64,
    /// Batches the shard refused as invalid, kept in `<spool>/rejected/`.
    pub batches_rejected: AtomicU64,
    /// Whether the breaker is open (the shard is considered down).
    pub breaker_open: AtomicBool,
    /// Batches in the spool now.
    pub spool_batches: AtomicU64,
    /// Bytes in the spool now.
    pub spool_bytes: AtomicU64,
}

/// Settings of one writer.
#[derive(Debug, Clone)]
pub(crate) struct WriterSettings {
    pub(crate) name: String,
    pub(crate) connect: tokio_postgres::Config,
    pub(crate) timeout: Duration,
    pub(crate) max_retry_interval: Duration,
    pub(crate) hot_retention: Duration,
}

/// The circuit breaker: closed while writes succeed; opened by a failure, after which the shard
/// is tried again at growing intervals (100 ms doubling up to `max_retry_interval`).
#[derive(Debug)]
struct Breaker {
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Breaker {
    const FIRST_RETRY: Duration = Duration::from_millis(100);

    fn allows_attempt(&self) -> bool {
        self.retry_at.is_none_or(|at| Instant::now() >= at)
    }

    fn open(&mut self, max: Duration) {
        self.backoff = if self.retry_at.is_none() { Self::FIRST_RETRY } else { (self.backoff * 2).min(max) };
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    fn close(&mut self) {
        self.retry_at = None;
    }
}

/// The task's state.
pub(crate) struct ShardWriter {
    settings: WriterSettings,
    /// The write connection; `None` until connected and after any failure.
    client: Option<Client>,
    /// Series ids whose `series` row this shard has (skips re-sending them).
    known_series: HashSet<u64>,
    /// Day partitions known to exist.
    days: HashSet<i64>,
    spool: Spool,
    rejected: Spool,
    breaker: Breaker,
    stats: Arc<ShardStats>,
    last_retention: Option<Instant>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter").field("shard", &self.settings.name).field("spool", &self.spool).finish()
    }
}

impl ShardWriter {
    pub(crate) fn new(settings: WriterSettings, spool: Spool, rejected: Spool, stats: Arc<ShardStats>) -> Self {
        stats.spool_batches.store(spool.len() as u64, Ordering::Relaxed);
        stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        Self {
            settings,
            client: None,
            known_series: HashSet::new(),
            days: HashSet::new(),
            spool,
            rejected,
            breaker: Breaker { retry_at: None, backoff: Breaker::FIRST_RETRY },
            stats,
            last_retention: None,
        }
    }

    /// Runs until the channel closes.
    pub(crate) async fn run(mut self, mut messages: mpsc::Receiver<Message>) {
        // Connect (and migrate) now, so queries find the tables before the first window closes.
        match self.connect().await {
            Ok(client) => self.client = Some(client),
            Err(error) => warn!(shard = %self.settings.name, %error, "Shard unavailable at start; will retry."),
        }
        loop {
            if !self.spool.is_empty() && self.breaker.allows_attempt() {
                self.replay().await;
            }
            let retry = self.breaker.retry_at.filter(|_| !self.spool.is_empty());
            tokio::select! {
                message = messages.recv() => match message {
                    None => break,
                    Some(Message::Batch(batch)) => self.take(batch).await,
                    Some(Message::Flush(done)) => {
                        let _ = done.send(());
                    }
                },
                () = sleep_until(retry) => {}
            }
        }
    }

    /// Writes `batch` or spools it; returns once it is in one of the two.
    async fn take(&mut self, batch: RecordBatch) {
        if self.spool.is_empty() && self.breaker.allows_attempt() && self.write(&batch).await {
            return;
        }
        let mut waiting_since: Option<Instant> = None;
        loop {
            if self.spool.has_room() {
                match self.spool.push(&batch) {
                    Ok(()) => {
                        self.stats.batches_spooled.fetch_add(1, Ordering::Relaxed);
                        self.publish_spool();
                        return;
                    }
                    Err(error) => error!(shard = %self.settings.name, %error, "Cannot spool a batch; retrying."),
                }
            } else if waiting_since.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!(shard = %self.settings.name, bytes = self.spool.bytes(),
                      "Shard down and its spool full: the pipelines wait, ingest answers 503.");
                waiting_since = Some(Instant::now());
            }
            // The shard is the only way out of a full spool: keep trying it.
            sleep_until(Some(self.breaker.retry_at.unwrap_or_else(|| Instant::now() + Breaker::FIRST_RETRY))).await;
            self.replay().await;
        }
    }

    /// Sends spooled batches, oldest first, until the spool is empty or the shard fails.
    async fn replay(&mut self) {
        let started = self.spool.len();
        while self.breaker.allows_attempt() {
            let batch = match self.spool.front() {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(error) => {
                    // Written atomically, so this is damage from outside: keep the file aside.
                    self.stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                    match self.spool.set_aside_front() {
                        Ok(aside) => error!(shard = %self.settings.name, %error, aside = %aside.display(),
                                            "A spooled batch cannot be read; set aside."),
                        Err(rename) => {
                            error!(shard = %self.settings.name, %error, %rename, "A spooled batch cannot be read or set aside.");
                            break;
                        }
                    }
                    self.publish_spool();
                    continue;
                }
            };
            if !self.write(&batch).await {
                break;
            }
            if let Err(error) = self.spool.pop_front() {
                // The batch is committed; replaying it again later is harmless (idempotent).
                error!(shard = %self.settings.name, %error, "Cannot remove a replayed spool file.");
                break;
            }
            self.stats.batches_replayed.fetch_add(1, Ordering::Relaxed);
            self.publish_spool();
        }
        if started > 0 && self.spool.is_empty() {
            info!(shard = %self.settings.name, batches = started, "Spool replayed; shard caught up.");
        }
    }

    /// Tries to commit `batch`. True when it is committed or was set aside as invalid; false when
    /// the shard failed (the breaker is open then).
    async fn write(&mut self, batch: &RecordBatch) -> bool {
        let result = tokio::time::timeout(self.write_timeout(batch), self.try_write(batch)).await;
        let error = match result {
            Ok(Ok(rows)) => {
                if self.breaker.retry_at.is_some() {
                    info!(shard = %self.settings.name, "Shard answers again; breaker closed.");
                }
                self.breaker.close();
                self.stats.breaker_open.store(false, Ordering::Relaxed);
                self.stats.rows_written.fetch_add(rows, Ordering::Relaxed);
                self.stats.batches_written.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Ok(Err(error)) => error,
            Err(_) => WriteError::Timeout,
        };
        self.client = None;
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if !error.is_retryable() {
            error!(shard = %self.settings.name, %error, "The shard refused a batch as invalid; kept in the spool's rejected/ folder.");
            self.stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = self.rejected.push(batch) {
                error!(shard = %self.settings.name, %error, "Cannot keep the rejected batch.");
            }
            return true;
        }
        if self.breaker.retry_at.is_none() {
            warn!(shard = %self.settings.name, %error, "Shard unavailable; breaker open, spooling its batches.");
        }
        self.breaker.open(self.settings.max_retry_interval);
        self.stats.breaker_open.store(true, Ordering::Relaxed);
        false
    }

    /// The time a batch may take: the connect timeout plus a second per 50k rows.
    fn write_timeout(&self, batch: &RecordBatch) -> Duration {
        self.settings.timeout * 2 + Duration::from_secs(batch.num_rows() as u64 / 50_000 + 1)
    }

    async fn try_write(&mut self, batch: &RecordBatch) -> Result<u64, WriteError> {
        let cutoff = crate::now_nanos() - self.settings.hot_retention.as_nanos() as i64;
        let batch = keep_hot_rows(batch, cutoff)?;
        if self.client.is_none() {
            self.client = Some(self.connect().await?);
        }
        let Some(client) = self.client.as_mut() else { return Err(WriteError::Timeout) };
        if self.last_retention.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            let dropped = migrations::drop_days_before(client, cutoff).await?;
            if !dropped.is_empty() {
                info!(shard = %self.settings.name, ?dropped, "Dropped rollup days past hot-retention.");
                self.days.clear();
            }
            self.last_retention = Some(Instant::now());
        }
        let starts = typed_column::<TimestampNanosecondArray>(&batch, "window_start")?;
        let days: HashSet<i64> = starts.values().iter().map(|&t| day_start(t)).collect();
        for day in days {
            if !self.days.contains(&day) {
                migrations::create_day_partition(client, day).await?;
                self.days.insert(day);
            }
        }
        copy::write(client, &batch, &mut self.known_series).await
    }

    async fn connect(&self) -> Result<Client, WriteError> {
        let unusable = |e: tokio_postgres::Error| WriteError::Unusable(super::describe(&e));
        let mut config = self.settings.connect.clone();
        config.connect_timeout(self.settings.timeout);
        let (mut client, connection) = config.connect(NoTls).await.map_err(unusable)?;
        let shard = self.settings.name.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                warn!(%shard, %error, "Write connection closed.");
            }
        });
        let applied = migrations::migrate(&mut client).await.map_err(unusable)?;
        if applied > 0 {
            info!(shard = %self.settings.name, applied, "Migrations applied.");
        }
        copy::prepare(&client).await.map_err(unusable)?;
        Ok(client)
    }

    fn publish_spool(&self) {
        self.stats.spool_batches.store(self.spool.len() as u64, Ordering::Relaxed);
        self.stats.spool_bytes.store(self.spool.bytes(), Ordering::Relaxed);
    }
}

/// The rows of `batch` whose day is still inside hot retention (older ones live in Parquet only).
fn keep_hot_rows(batch: &RecordBatch, cutoff: i64) -> Result<RecordBatch, WriteError> {
    let starts = typed_column::<TimestampNanosecondArray>(batch, "window_start")?;
    if starts.values().iter().all(|&t| day_start(t) + 86_400_000_000_000 > cutoff) {
        return Ok(batch.clone());
    }
    let keep: BooleanArray =
        starts.values().iter().map(|&t| Some(day_start(t) + 86_400_000_000_000 > cutoff)).collect();
    Ok(arrow_select::filter::filter_record_batch(batch, &keep).map_err(crate::error::StorageError::from)?)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
