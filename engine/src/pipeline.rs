//! The pipelines: a rayon pool that drains every partition channel, one task per partition per
//! tick, each owning its partition's state (windows, watermark, counters).
//!
//! A tick of one partition: take up to 64 batches; for each point, decide
//! late or on time against the watermark, add on-time points to their windows and advance the
//! watermark; hand every point to the sink as raw Arrow data (late ones too: the cold store keeps
//! every accepted point); apply the idle rule; close the windows the watermark passed and hand
//! them to the sink as rollups. State is moved into the task that owns it (`par_iter_mut`), so no
//! lock is taken on the per-point path; totals are published once per tick.
//!
//! A checkpoint barrier in the channel ends the tick early: everything before it is processed and
//! emitted, then the partition's state (open windows, watermark) is encoded and handed to the
//! checkpointer, and what follows belongs to the next epoch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use augur_ingest::{Barrier, Delivery, PartitionReceiver, PointBatch};
use augur_storage::sink::{Epoch, Sink};
use crossbeam_channel::Sender;
use rayon::prelude::*;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::predict::events::{PredictConfig, PredictTotals, Predictor};
use crate::predict::risk::RiskBoard;
use crate::raw::raw_batches;
use crate::rollup::RollupBuilder;
use crate::snapshot::{self, SnapshotError};
use crate::watermark::Watermark;
use crate::window::{Resolution, Windows};

/// Batches one task takes from its channel per tick, so one busy partition cannot hold a thread
/// forever while others wait.
const MAX_BATCHES_PER_TICK: usize = 64;
/// Least time between two logs of sink errors from one partition.
const SINK_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// How the pipelines work.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Threads of the pool.
    pub threads: usize,
    /// How long an idle driver waits before looking again.
    pub tick: Duration,
    /// Window resolutions, finest first, each a multiple of the one before.
    pub resolutions: Vec<Resolution>,
    /// Watermark = max event time − this (ns).
    pub allowed_lateness: i64,
    /// After this long (ns, wall clock) without data, a partition's watermark follows the clock.
    pub idle_timeout: i64,
    /// Anomaly scores and events.
    pub predict: Arc<PredictConfig>,
}

/// What one partition has processed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionTotals {
    /// Points drained from the channel.
    pub points: u64,
    /// Field values drained.
    pub values: u64,
    /// Batches drained.
    pub batches: u64,
    /// Points drained per region.
    pub by_region: BTreeMap<String, u64>,
    /// Points added to windows.
    pub aggregated: u64,
    /// Points behind the watermark: kept raw, not aggregated.
    pub late: u64,
    /// Late points per region.
    pub late_by_region: BTreeMap<String, u64>,
    /// Rollup rows emitted.
    pub rollup_rows: u64,
    /// Raw rows emitted.
    pub raw_rows: u64,
    /// Batches the sink refused.
    pub sink_errors: u64,
    /// Series with open windows.
    pub active_series: u64,
    /// The watermark (ns), `i64::MIN` before any point.
    pub watermark: i64,
    /// Anomaly scores and events.
    pub predict: PredictTotals,
}

/// Totals of every partition, published by the pipelines once per tick.
#[derive(Debug, Default)]
pub struct PipelineStats {
    partitions: Mutex<Vec<PartitionTotals>>,
}

impl PipelineStats {
    /// A copy of the latest totals, one entry per partition.
    pub fn snapshot(&self) -> Vec<PartitionTotals> {
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A partition's state at a barrier, for the checkpointer.
#[derive(Debug)]
pub struct PartitionSnapshot {
    /// The partition.
    pub partition: usize,
    /// The barrier it was taken at.
    pub barrier: Barrier,
    /// Its state.
    pub state: PartitionState,
}

/// A partition's state as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// Its open windows and watermark ([`snapshot::encode`]).
    pub windows: Vec<u8>,
    /// Its detectors and open events ([`Predictor::encode`]).
    pub predictions: Vec<u8>,
}

/// One partition's owner.
struct PartitionTask {
    receiver: PartitionReceiver,
    windows: Windows,
    watermark: Watermark,
    totals: PartitionTotals,
    rollups: RollupBuilder,
    predictor: Predictor,
    /// Where the predictor's signals about hosts go (none: they are dropped).
    risk: Option<Arc<RiskBoard>>,
    sink: Arc<dyn Sink>,
    disconnected: bool,
    last_sink_error_log: Option<Instant>,
    /// The epoch of what this partition emits now.
    epoch: Epoch,
    /// Where snapshots go at barriers (none: barriers only advance the epoch).
    checkpoints: Option<Sender<PartitionSnapshot>>,
}

impl PartitionTask {
    /// One tick at wall-clock time `now`; whether any batch or barrier was found.
    fn tick(&mut self, now: i64) -> bool {
        let mut drained = Vec::new();
        let mut barrier = None;
        while drained.len() < MAX_BATCHES_PER_TICK && barrier.is_none() {
            match self.receiver.recv_timeout(Duration::ZERO) {
                Ok(Delivery::Batch(batch)) => drained.push(batch),
                Ok(Delivery::Barrier(b)) => barrier = Some(b),
                Err(disconnected) => {
                    self.disconnected = disconnected;
                    break;
                }
            }
        }
        if !drained.is_empty() {
            self.watermark.data_arrived(now);
            for batch in &drained {
                self.process(batch);
            }
            self.emit_raw(&drained);
        }
        self.watermark.tick(now);
        self.emit_closed(false);
        if let Some(barrier) = barrier {
            self.checkpoint(barrier);
        }
        !drained.is_empty() || barrier.is_some()
    }

    /// Hands the partition's state at `barrier` to the checkpointer; what follows is the next epoch.
    fn checkpoint(&mut self, barrier: Barrier) {
        if let Some(checkpoints) = &self.checkpoints {
            let state = PartitionState {
                windows: snapshot::encode(&self.windows, &self.watermark),
                predictions: self.predictor.encode(),
            };
            // The checkpointer only goes away at shutdown, after its last checkpoint.
            let _ = checkpoints.send(PartitionSnapshot { partition: self.receiver.partition, barrier, state });
        }
        self.epoch = barrier.epoch + 1;
    }

    fn process(&mut self, batch: &PointBatch) {
        self.totals.points += batch.len() as u64;
        self.totals.values += batch.value_count() as u64;
        self.totals.batches += 1;
        for point in batch.iter() {
            count(&mut self.totals.by_region, point.region());
            if self.watermark.is_late(point.time()) {
                self.totals.late += 1;
                count(&mut self.totals.late_by_region, point.region());
            } else {
                self.windows.add(&point);
                self.predictor.observe(&point);
                self.watermark.observe(point.time());
                self.totals.aggregated += 1;
            }
        }
    }

    fn emit_raw(&mut self, batches: &[PointBatch]) {
        match raw_batches(batches) {
            Ok(raw) => {
                for (key, batch) in raw {
                    let rows = batch.num_rows() as u64;
                    match self.sink.raw(self.epoch, &key, batch) {
                        Ok(()) => self.totals.raw_rows += rows,
                        Err(e) => self.sink_failed(&e),
                    }
                }
            }
            Err(e) => self.sink_failed(&e),
        }
    }

    /// Closes what the watermark passed (everything, marked partial where open, when `flush`).
    fn emit_closed(&mut self, flush: bool) {
        let closed = self.windows.close(self.watermark.value(), flush, &mut self.rollups);
        if closed.rows > 0 {
            match self.rollups.finish() {
                Ok(batch) => {
                    self.predictor.observe_rollups(&batch);
                    match self.sink.rollups(self.epoch, batch) {
                        Ok(()) => self.totals.rollup_rows += closed.rows as u64,
                        Err(e) => self.sink_failed(&e),
                    }
                }
                Err(e) => self.sink_failed(&e),
            }
        }
        self.predictor.close_quiet(self.watermark.value());
        let contributions = self.predictor.take_contributions();
        if let Some(board) = &self.risk {
            let changes = board.add(contributions, self.watermark.value());
            self.predictor.record_risk(&changes);
        }
        match self.predictor.finish() {
            Ok(Some(batch)) => {
                if let Err(e) = self.sink.predictions(self.epoch, batch) {
                    self.sink_failed(&e);
                }
            }
            Ok(None) => {}
            Err(e) => self.sink_failed(&e),
        }
        self.totals.predict = self.predictor.totals();
        self.totals.active_series = self.windows.active_series() as u64;
        self.totals.watermark = self.watermark.value();
    }

    fn sink_failed(&mut self, error: &dyn std::fmt::Display) {
        self.totals.sink_errors += 1;
        if self.last_sink_error_log.is_none_or(|at| at.elapsed() >= SINK_ERROR_LOG_EVERY) {
            self.last_sink_error_log = Some(Instant::now());
            let (partition, errors) = (self.receiver.partition, self.totals.sink_errors);
            error!(partition, errors, %error, "The sink refused a batch.");
        }
    }
}

fn count(map: &mut BTreeMap<String, u64>, region: &str) {
    match map.get_mut(region) {
        Some(n) => *n += 1,
        None => {
            map.insert(region.to_owned(), 1);
        }
    }
}

/// Every partition's task and the pool they run on. [`Pipelines`] drives it from a thread; tests
/// drive it tick by tick with their own clock.
pub struct Partitions {
    tasks: Vec<PartitionTask>,
    pool: rayon::ThreadPool,
    stats: Arc<PipelineStats>,
    sink: Arc<dyn Sink>,
    config: PipelineConfig,
}

impl std::fmt::Debug for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitions").field("partitions", &self.tasks.len()).finish()
    }
}

impl Partitions {
    /// Tasks for `receivers`, writing to `sink`.
    ///
    /// # Errors
    /// When the thread pool cannot start.
    pub fn new(
        receivers: Vec<PartitionReceiver>,
        config: &PipelineConfig,
        sink: Arc<dyn Sink>,
    ) -> std::io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("augur-pipeline-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let tasks: Vec<PartitionTask> = receivers
            .into_iter()
            .map(|receiver| PartitionTask {
                receiver,
                windows: Windows::new(config.resolutions.clone()),
                watermark: Watermark::new(config.allowed_lateness, config.idle_timeout),
                totals: PartitionTotals { watermark: i64::MIN, ..PartitionTotals::default() },
                rollups: RollupBuilder::default(),
                predictor: Predictor::new(config.predict.clone()),
                risk: None,
                sink: sink.clone(),
                disconnected: false,
                last_sink_error_log: None,
                epoch: 1,
                checkpoints: None,
            })
            .collect();
        let stats = Arc::new(PipelineStats { partitions: Mutex::new(vec![PartitionTotals::default(); tasks.len()]) });
        Ok(Self { tasks, pool, stats, sink, config: config.clone() })
    }

    /// Sends each partition's state to `checkpoints` at every barrier.
    #[must_use]
    pub fn with_checkpoints(mut self, checkpoints: &Sender<PartitionSnapshot>) -> Self {
        for task in &mut self.tasks {
            task.checkpoints = Some(checkpoints.clone());
        }
        self
    }

    /// Hands every partition's signals about hosts to `board`.
    #[must_use]
    pub fn with_risk(mut self, board: &Arc<RiskBoard>) -> Self {
        for task in &mut self.tasks {
            task.risk = Some(board.clone());
        }
        self
    }

    /// Continues from the checkpoint of `epoch`: each partition's state from `states` (one per
    /// partition, in order), and output from here on in epoch `epoch + 1`.
    ///
    /// # Errors
    /// When a state cannot be read or was taken under other resolutions.
    pub fn restore(&mut self, epoch: Epoch, states: &[PartitionState]) -> Result<(), SnapshotError> {
        let settings = (self.config.allowed_lateness, self.config.idle_timeout);
        let mut decoded = Vec::with_capacity(states.len());
        for state in states {
            let (windows, watermark) = snapshot::decode(&state.windows, self.config.resolutions.clone(), settings)?;
            decoded.push((windows, watermark, Predictor::decode(&state.predictions, self.config.predict.clone())?));
        }
        if decoded.len() != self.tasks.len() {
            decoded = self.repartition(decoded);
        }
        for (task, (windows, watermark, predictor)) in self.tasks.iter_mut().zip(decoded) {
            task.windows = windows;
            task.watermark = watermark;
            task.predictor = predictor;
            task.totals.predict = task.predictor.totals();
            task.totals.active_series = task.windows.active_series() as u64;
            task.totals.watermark = task.watermark.value();
        }
        for task in &mut self.tasks {
            task.epoch = epoch + 1;
        }
        self.publish();
        Ok(())
    }

    /// States of another partition count, each series moved to the partition the router sends it
    /// to now. Every partition takes the latest watermark: a window closed anywhere stays closed.
    fn repartition(&self, old: Vec<(Windows, Watermark, Predictor)>) -> Vec<(Windows, Watermark, Predictor)> {
        let n = self.tasks.len();
        info!(from = old.len(), to = n, "Moving open windows and detectors to another partition count.");
        let place = |series| augur_ingest::router::jump_hash(series, n);
        let mut watermark = Watermark::new(self.config.allowed_lateness, self.config.idle_timeout);
        let mut windows: Vec<Windows> = (0..n).map(|_| Windows::new(self.config.resolutions.clone())).collect();
        let mut predictors: Vec<Predictor> = (0..n).map(|_| Predictor::new(self.config.predict.clone())).collect();
        for (w, mark, p) in old {
            watermark.merge(&mark);
            w.move_into(&mut windows, place);
            p.move_into(&mut predictors, place);
        }
        windows.into_iter().zip(predictors).map(|(w, p)| (w, watermark.clone(), p)).collect()
    }

    /// The published totals.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Runs one tick of every partition in parallel at wall-clock time `now`; whether any found
    /// data.
    pub fn tick(&mut self, now: i64) -> bool {
        let tasks = &mut self.tasks;
        let found = self.pool.install(|| tasks.par_iter_mut().map(|t| t.tick(now)).reduce(|| false, |a, b| a || b));
        // Time-based sink work (writing aged buffers) runs on the pool too, once per tick.
        if let Err(e) = self.pool.install(|| self.sink.tick()) {
            error!(error = %e, "The sink's periodic work failed.");
        }
        self.publish();
        found
    }

    /// Whether every channel is disconnected and drained.
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(|t| t.disconnected)
    }

    /// Closes every open window (marked partial where the watermark had not passed its end),
    /// emits them and flushes the sink. Called once the channels are drained, at shutdown.
    pub fn flush(&mut self) {
        let tasks = &mut self.tasks;
        self.pool.install(|| tasks.par_iter_mut().for_each(|t| t.emit_closed(true)));
        if let Err(e) = self.sink.flush() {
            error!(error = %e, "Flushing the sink failed.");
        }
        self.publish();
    }

    fn publish(&self) {
        *self.stats.partitions.lock().unwrap_or_else(PoisonError::into_inner) =
            self.tasks.iter().map(|t| t.totals.clone()).collect();
    }
}

/// The running pipelines. They stop once every sender of every partition is gone and the
/// channels are empty, then flush every open window, so whatever was admitted is processed and
/// emitted before [`Pipelines::join`] returns.
#[derive(Debug)]
pub struct Pipelines {
    driver: JoinHandle<()>,
    stats: Arc<PipelineStats>,
}

impl Pipelines {
    /// Starts driving `partitions` on a thread of its own, with `clock` for the idle rule.
    ///
    /// # Errors
    /// When the driver thread cannot be created.
    pub fn start(mut partitions: Partitions, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let stats = partitions.stats().clone();
        let tick = partitions.config.tick;
        let driver = std::thread::Builder::new().name("augur-pipelines".into()).spawn(move || {
            loop {
                let found = partitions.tick(clock.now_nanos());
                if partitions.finished() {
                    break;
                }
                if !found {
                    std::thread::sleep(tick);
                }
            }
            partitions.flush();
        })?;
        Ok(Self { driver, stats })
    }

    /// The published totals.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Waits until the pipelines have drained and flushed everything and stopped (after every
    /// sender is dropped).
    pub fn join(self) {
        if self.driver.join().is_err() {
            warn!("The pipeline driver panicked.");
        }
    }
}
