//! One shard's writer: a tokio task that owns the shard's write connection, its circuit breaker
//! and its spool. Batches arrive on a bounded channel; each goes to PostgreSQL when the shard
//! answers and nothing waits in the spool, else to the spool. When the breaker's retry time comes,
//! the spool is replayed oldest first, each file removed once committed.
//!
//! Once an attempt runs past `timeout` (or while the shard is known to be down), the writer keeps
//! taking batches into the spool, so a shard that hangs instead of refusing never holds up the
//! pipelines for long; only a full spool stops the intake, which backs up into ingest as 503s.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
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
    /// Answered once every earlier batch is in PostgreSQL or the spool, after trying to replay the
    /// spool into a reachable shard (at shutdown).
    Flush(SyncSender<()>),
    /// Answered once every earlier batch is in PostgreSQL or the spool (at a checkpoint).
    Sync(SyncSender<()>),
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

    /// Allows an attempt now; the backoff stays as it is if that attempt fails.
    fn retry_now(&mut self) {
        if self.retry_at.is_some() {
            self.retry_at = Some(Instant::now());
        }
    }
}

/// The shard's write connection and what it remembers about the shard.
struct Connection {
    settings: WriterSettings,
    /// `None` until connected and after any failure.
    client: Option<Client>,
    /// Series ids whose `series` row this shard has (skips re-sending them); reset per connection.
    known_series: HashSet<u64>,
    /// Day partitions known to exist; reset per connection.
    days: HashSet<i64>,
    last_retention: Option<Instant>,
}

/// The intake side: what arrives while an attempt runs goes here.
struct Intake {
    messages: mpsc::Receiver<Message>,
    spool: Spool,
    stats: Arc<ShardStats>,
    /// Set by the sink before its final flush: the spool then takes batches past its bound, so
    /// shutdown never waits on a shard that stays down.
    draining: Arc<AtomicBool>,
    /// Flushes to answer once the batch in flight is committed or spooled.
    flushes: Vec<SyncSender<()>>,
    /// Final flushes waiting for their replay attempt. They may arrive in the middle of an
    /// attempt, so the main loop, not the arrival, runs the replay.
    flushes_to_replay: Vec<SyncSender<()>>,
    /// The sink is gone.
    closed: bool,
}

/// The task's state.
pub(crate) struct ShardWriter {
    conn: Connection,
    intake: Intake,
    rejected: Spool,
    breaker: Breaker,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("shard", &self.conn.settings.name)
            .field("spool", &self.intake.spool)
            .finish()
    }
}

impl ShardWriter {
    pub(crate) fn new(
        settings: WriterSettings,
        (spool, rejected): (Spool, Spool),
        messages: mpsc::Receiver<Message>,
        stats: Arc<ShardStats>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        let conn = Connection {
            settings,
            client: None,
            known_series: HashSet::new(),
            days: HashSet::new(),
            last_retention: None,
        };
        let intake = Intake {
            messages,
            spool,
            stats,
            draining,
            flushes: Vec::new(),
            flushes_to_replay: Vec::new(),
            closed: false,
        };
        intake.publish_spool();
        Self { conn, intake, rejected, breaker: Breaker { retry_at: None, backoff: Breaker::FIRST_RETRY } }
    }

    fn name(&self) -> &str {
        &self.conn.settings.name
    }

    /// Runs until the sink is gone.
    pub(crate) async fn run(mut self) {
        // Connect (and migrate) now, so queries find the tables before the first window closes.
        if let Err(error) = self.conn.connect().await {
            warn!(shard = %self.name(), %error, "Shard unavailable at start; will retry.");
        }
        loop {
            if !self.intake.flushes_to_replay.is_empty() {
                let waiting = std::mem::take(&mut self.intake.flushes_to_replay);
                // A reachable shard gets what its spool holds before the flush is answered (at
                // shutdown, PostgreSQL is then complete, not just the spool): one attempt now,
                // whatever the backoff says, and on while it succeeds.
                self.breaker.retry_now();
                while !self.intake.spool.is_empty() && self.breaker.allows_attempt() {
                    self.replay_one().await;
                }
                self.intake.flushes.extend(waiting);
            }
            // Everything received so far is committed or spooled.
            for done in self.intake.flushes.drain(..) {
                let _ = done.send(());
            }
            if self.intake.closed {
                return;
            }
            if !self.intake.spool.is_empty() && self.breaker.allows_attempt() {
                self.replay_one().await;
                continue;
            }
            let retry = self.breaker.retry_at.filter(|_| !self.intake.spool.is_empty());
            tokio::select! {
                message = self.intake.messages.recv() => match message {
                    None => self.intake.closed = true,
                    Some(Message::Flush(done)) => self.intake.flushes_to_replay.push(done),
                    Some(Message::Sync(done)) => self.intake.flushes.push(done),
                    Some(Message::Batch(batch)) => self.take(batch).await,
                },
                () = sleep_until(retry) => {}
            }
        }
    }

    /// Writes `batch` or spools it; returns once it is in one of the two.
    async fn take(&mut self, batch: RecordBatch) {
        if self.intake.spool.is_empty() && self.breaker.allows_attempt() && self.attempt(&batch).await {
            return;
        }
        // Batches that arrived during the attempt are already in the spool, ahead of this one. That
        // order is harmless: within a run each window's row is emitted once, so no two batches of
        // one run hold the same key.
        let mut warned: Option<Instant> = None;
        loop {
            if self.intake.has_room() {
                match self.intake.spool.push(&batch) {
                    Ok(()) => {
                        self.intake.stats.batches_spooled.fetch_add(1, Ordering::Relaxed);
                        self.intake.publish_spool();
                        return;
                    }
                    Err(error) => error!(shard = %self.name(), %error, "Cannot spool a batch; retrying."),
                }
            } else if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                warn!(shard = %self.name(), bytes = self.intake.spool.bytes(),
                      "Shard down and its spool full: the pipelines wait, ingest answers 503.");
                warned = Some(Instant::now());
            }
            // The shard is the only way out of a full spool (or a failing disk): keep trying it.
            sleep_until(Some(self.breaker.retry_at.unwrap_or_else(|| Instant::now() + Breaker::FIRST_RETRY))).await;
            if self.breaker.allows_attempt() {
                self.replay_one().await;
            }
        }
    }

    /// Sends the oldest spooled batch; removes it once committed.
    async fn replay_one(&mut self) {
        let batch = match self.intake.spool.front() {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(error) => {
                // Written atomically, so this is damage from outside: keep the file aside.
                self.intake.stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                match self.intake.spool.set_aside_front() {
                    Ok(aside) => error!(shard = %self.name(), %error, aside = %aside.display(),
                                        "A spooled batch cannot be read; set aside."),
                    Err(rename) => {
                        error!(shard = %self.name(), %error, %rename, "A spooled batch cannot be read or set aside.");
                        self.breaker.open(self.conn.settings.max_retry_interval);
                    }
                }
                self.intake.publish_spool();
                return;
            }
        };
        if !self.attempt(&batch).await {
            return;
        }
        match self.intake.spool.pop_front() {
            Ok(()) => {
                self.intake.stats.batches_replayed.fetch_add(1, Ordering::Relaxed);
                self.intake.publish_spool();
                if self.intake.spool.is_empty() {
                    info!(shard = %self.name(), "Spool replayed; shard caught up.");
                }
            }
            Err(error) => {
                // Committed already; replaying it again later is harmless (idempotent upserts).
                error!(shard = %self.name(), %error, "Cannot remove a replayed spool file.");
                self.breaker.open(self.conn.settings.max_retry_interval);
            }
        }
    }

    /// Tries to commit `batch`, taking new batches into the spool meanwhile. True when it is
    /// committed or kept aside as invalid; false when the shard failed (the breaker is open then).
    async fn attempt(&mut self, batch: &RecordBatch) -> bool {
        let limit = self.conn.settings.timeout * 2 + Duration::from_secs(batch.num_rows() as u64 / 50_000 + 1);
        // A healthy shard's writes just queue behind each other (the channel is the buffer); only
        // an attempt that runs past `timeout`, or any attempt while the shard is known to be down,
        // sends new batches to the spool instead.
        let patience = if self.breaker.retry_at.is_some() { Duration::ZERO } else { self.conn.settings.timeout };
        let result = {
            let write = tokio::time::timeout(limit, self.conn.write(batch));
            let patience_over = tokio::time::sleep(patience);
            tokio::pin!(write, patience_over);
            let mut impatient = patience.is_zero();
            let intake = &mut self.intake;
            loop {
                tokio::select! {
                    result = &mut write => break result,
                    () = &mut patience_over, if !impatient => impatient = true,
                    message = intake.messages.recv(), if impatient && !intake.closed && intake.has_room() => {
                        intake.take(message).await;
                    }
                }
            }
        };
        let error = match result {
            Ok(Ok(rows)) => {
                if self.breaker.retry_at.is_some() {
                    info!(shard = %self.name(), "Shard answers again; breaker closed.");
                }
                self.breaker.close();
                let stats = &self.intake.stats;
                stats.breaker_open.store(false, Ordering::Relaxed);
                stats.rows_written.fetch_add(rows, Ordering::Relaxed);
                stats.batches_written.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Ok(Err(error)) => error,
            Err(_) => WriteError::Timeout,
        };
        self.conn.client = None;
        self.intake.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        if !error.is_retryable() {
            error!(shard = %self.name(), %error, "The shard refused a batch as invalid; keeping it in the spool's rejected/ folder.");
            match self.rejected.push(batch) {
                Ok(()) => {
                    self.intake.stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                // Not kept aside, so not done: it stays where it is and is tried again later.
                Err(keep) => error!(shard = %self.name(), error = %keep, "Cannot keep the rejected batch aside."),
            }
        } else if self.breaker.retry_at.is_none() {
            warn!(shard = %self.name(), %error, "Shard unavailable; breaker open, spooling its batches.");
        }
        self.breaker.open(self.conn.settings.max_retry_interval);
        self.intake.stats.breaker_open.store(true, Ordering::Relaxed);
        false
    }
}

impl Intake {
    /// Whether another batch may be spooled.
    fn has_room(&self) -> bool {
        self.spool.has_room() || self.draining.load(Ordering::Relaxed)
    }

    /// Handles a message that arrived during an attempt: batches go to the spool.
    async fn take(&mut self, message: Option<Message>) {
        match message {
            None => self.closed = true,
            Some(Message::Flush(done)) => self.flushes_to_replay.push(done),
            Some(Message::Sync(done)) => self.flushes.push(done),
            Some(Message::Batch(batch)) => {
                // A failing disk: retry until it takes the batch; the attempt's timeout still runs.
                while let Err(error) = self.spool.push(&batch) {
                    error!(%error, "Cannot spool a batch; retrying in 1 s.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                self.stats.batches_spooled.fetch_add(1, Ordering::Relaxed);
                self.publish_spool();
            }
        }
    }

    fn publish_spool(&self) {
        self.stats.spool_batches.store(self.spool.len() as u64, Ordering::Relaxed);
        self.stats.spool_bytes.store(self.spool.bytes(), Ordering::Relaxed);
    }
}

impl Connection {
    /// Commits `batch` (rollups or predictions, told apart by their schema); connects first if
    /// needed.
    async fn write(&mut self, batch: &RecordBatch) -> Result<u64, WriteError> {
        if batch.schema_ref().column_with_name("event_id").is_some() {
            if self.client.is_none() {
                self.connect().await?;
            }
            let Some(client) = self.client.as_mut() else { return Err(WriteError::Timeout) };
            return copy::write_predictions(client, batch).await;
        }
        let cutoff = crate::now_nanos().saturating_sub(self.settings.hot_retention.as_nanos() as i64);
        let batch = keep_hot_rows(batch, cutoff)?;
        if self.client.is_none() {
            self.connect().await?;
        }
        let Some(client) = self.client.as_mut() else { return Err(WriteError::Timeout) };
        let unusable = |e: tokio_postgres::Error| WriteError::Unusable(super::describe(&e));
        if self.last_retention.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            // Housekeeping: a failure here is logged and retried in an hour, never the batch's.
            match migrations::drop_days_before(client, cutoff).await {
                Ok(dropped) if !dropped.is_empty() => {
                    info!(shard = %self.settings.name, ?dropped, "Dropped rollup days past hot-retention.");
                    self.days.clear();
                }
                Ok(_) => {}
                Err(error) => warn!(shard = %self.settings.name, error = %super::describe(&error), "Retention failed."),
            }
            self.last_retention = Some(Instant::now());
        }
        let starts = typed_column::<TimestampNanosecondArray>(&batch, "window_start")?;
        let days: HashSet<i64> = starts.values().iter().map(|&t| day_start(t)).collect();
        for day in days {
            if !self.days.contains(&day) {
                migrations::create_day_partition(client, day).await.map_err(unusable)?;
                self.days.insert(day);
            }
        }
        copy::write(client, &batch, &mut self.known_series).await
    }

    /// Connects, migrates and prepares the staging tables; forgets what an earlier connection
    /// learned (the shard may have been restored from a backup or failed over).
    async fn connect(&mut self) -> Result<(), WriteError> {
        let unusable = |e: tokio_postgres::Error| WriteError::Unusable(super::describe(&e));
        self.client = None;
        self.known_series.clear();
        self.days.clear();
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
        self.client = Some(client);
        Ok(())
    }
}

/// The rows of `batch` whose day is still inside hot retention (older ones live in Parquet only).
fn keep_hot_rows(batch: &RecordBatch, cutoff: i64) -> Result<RecordBatch, WriteError> {
    const DAY: i64 = 86_400_000_000_000;
    let starts = typed_column::<TimestampNanosecondArray>(batch, "window_start")?;
    if starts.values().iter().all(|&t| day_start(t) + DAY > cutoff) {
        return Ok(batch.clone());
    }
    let keep: BooleanArray = starts.values().iter().map(|&t| Some(day_start(t) + DAY > cutoff)).collect();
    Ok(arrow_select::filter::filter_record_batch(batch, &keep).map_err(crate::error::StorageError::from)?)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
