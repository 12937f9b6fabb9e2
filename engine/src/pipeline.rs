//! The pipelines: one loop per partition, each on a thread of its own, owning its partition's
//! state (windows, watermark, detectors, counters) and scheduled by its own channel: it blocks
//! until a batch (or a barrier) arrives, takes up to 63 more, processes them and emits. No
//! partition waits for another (a global tick would make each wait for the slowest, and leave
//! a core idle between ticks), and no lock is taken on the per-point path.
//!
//! A round of one partition: for each point, decide late or on time against the watermark, add
//! on-time points to their windows and advance the watermark; hand every point to the sink as raw
//! Arrow data (late ones too: the cold store keeps every accepted point); apply the idle rule;
//! close the windows the watermark passed and hand them to the sink as rollups.
//!
//! A checkpoint barrier in the channel ends the round early: everything before it is processed
//! and emitted, then the partition's state (open windows, watermark, detectors) is encoded and
//! handed to the checkpointer, and what follows belongs to the next epoch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use augur_ingest::{Barrier, Delivery, PartitionReceiver, PointBatch};
use augur_storage::sink::{Epoch, Sink};
use crossbeam_channel::Sender;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::predict::events::{PredictConfig, PredictTotals, Predictor, PredictorState};
use crate::predict::risk::RiskBoard;
use crate::raw::raw_batches;
use crate::rollup::RollupBuilder;
use crate::snapshot::{self, Reader, SnapshotError, Writer};
use crate::watermark::Watermark;
use crate::window::{Resolution, Windows};

/// Batches a partition takes from its channel per round: its windows close, its watermark
/// follows the clock and its barriers are seen at least this often under any load.
const MAX_BATCHES_PER_ROUND: usize = 64;
/// Series whose windows a partition closes per round at most: a minute's windows of a million
/// series close over many rounds, with points taken in between, not in one stop of tens of
/// seconds (measured at 1M hosts × 8 fields, docs/performance.md). It also bounds the rollup
/// rows built and handed to the sink at once, at a flush too.
const MAX_SERIES_CLOSED_PER_ROUND: usize = 16_384;
/// How often a busy partition publishes its totals (an idle one does after every wait).
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How often the sink's time-based work (aged buffers, retention) runs.
const SINK_TICK_EVERY: Duration = Duration::from_millis(100);
/// Least time between two logs of sink errors from one partition.
const SINK_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// How the pipelines work.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How long an idle partition waits for data before it applies the idle rule again.
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

/// Totals of every partition, each published by its partition after its rounds.
#[derive(Debug, Default)]
pub struct PipelineStats {
    partitions: Mutex<Vec<PartitionTotals>>,
}

impl PipelineStats {
    /// A copy of the latest totals, one entry per partition.
    pub fn snapshot(&self) -> Vec<PartitionTotals> {
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn publish(&self, partition: usize, totals: &PartitionTotals) {
        if let Some(slot) = self.partitions.lock().unwrap_or_else(PoisonError::into_inner).get_mut(partition) {
            slot.clone_from(totals);
        }
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

/// A partition's state: its open windows, watermark, detectors and open events. At a barrier the
/// partition hands the checkpointer a copy and goes on; the checkpointer encodes the copy into
/// the partition's file. The copy shares each series' windows and detectors with the partition
/// (copy on write, per series), so taking it costs the partition's thread a few milliseconds,
/// and the partition copies a series only if it changes it before the checkpointer is done.
#[derive(Debug, Clone)]
pub struct PartitionState {
    /// Open windows.
    pub windows: Windows,
    /// The watermark.
    pub watermark: Watermark,
    /// Detectors and open events.
    pub predictor: PredictorState,
}

impl PartitionState {
    /// Writes it into `w`: the windows' snapshot ([`snapshot::encode_into`]), then the
    /// predictor's state ([`Predictor::encode`]).
    pub fn encode_into(self, w: &mut Writer) {
        snapshot::encode_into(self.windows, &self.watermark, w);
        self.predictor.encode_into(w);
    }
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
    /// One round: waits up to `wait` for a delivery, takes up to [`MAX_BATCHES_PER_ROUND`] without
    /// waiting further (up to a barrier), processes them at wall-clock time `now()` and emits;
    /// whether any batch or barrier was found.
    fn round(&mut self, wait: Duration, now: impl FnOnce() -> i64) -> bool {
        let mut drained = Vec::new();
        let mut barrier = None;
        let mut timeout = wait;
        while drained.len() < MAX_BATCHES_PER_ROUND && barrier.is_none() {
            match self.receiver.recv_timeout(timeout) {
                Ok(Delivery::Batch(batch)) => drained.push(batch),
                Ok(Delivery::Barrier(b)) => barrier = Some(b),
                Err(disconnected) => {
                    self.disconnected = disconnected;
                    break;
                }
            }
            timeout = Duration::ZERO;
        }
        let now = now();
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

    /// The partition's loop on its own thread: rounds until every sender is gone and the channel
    /// is drained, then closes every open window (partial) and emits it.
    fn run(mut self, wait: Duration, clock: &dyn Clock, stats: &PipelineStats) {
        let mut published = Instant::now();
        while !self.disconnected {
            let found = self.round(wait, || clock.now_nanos());
            if !found || published.elapsed() >= PUBLISH_EVERY {
                stats.publish(self.receiver.partition, &self.totals);
                published = Instant::now();
            }
        }
        self.emit_closed(true);
        stats.publish(self.receiver.partition, &self.totals);
    }

    /// Hands the partition's state at `barrier` to the checkpointer; what follows is the next epoch.
    fn checkpoint(&mut self, barrier: Barrier) {
        if let Some(checkpoints) = &self.checkpoints {
            let started = Instant::now();
            let state = PartitionState {
                windows: self.windows.clone(),
                watermark: self.watermark.clone(),
                predictor: self.predictor.state(),
            };
            let (partition, copy_ms) = (self.receiver.partition, started.elapsed().as_millis() as u64);
            debug!(partition, copy_ms, "Partition state copied for the checkpoint.");
            // The checkpointer only goes away at shutdown, after its last checkpoint.
            let _ = checkpoints.send(PartitionSnapshot { partition, barrier, state });
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

    /// Closes what the watermark passed, one round's share (everything, marked partial where
    /// open, when `flush`: in shares too, so a flush builds no more rows at once than a round).
    fn emit_closed(&mut self, flush: bool) {
        loop {
            let closed = self.windows.close_at_most(
                self.watermark.value(),
                flush,
                &mut self.rollups,
                MAX_SERIES_CLOSED_PER_ROUND,
            );
            self.emit_rollups(closed.rows);
            if !flush || closed.series == 0 {
                break;
            }
        }
        self.emit_predictions();
    }

    /// Hands the rows closed into the rollup builder to the predictor and the sink.
    fn emit_rollups(&mut self, rows: usize) {
        if rows > 0 {
            match self.rollups.finish() {
                Ok(batch) => {
                    self.predictor.observe_rollups(&batch);
                    match self.sink.rollups(self.epoch, batch) {
                        Ok(()) => self.totals.rollup_rows += rows as u64,
                        Err(e) => self.sink_failed(&e),
                    }
                }
                Err(e) => self.sink_failed(&e),
            }
        }
    }

    /// Closes quiet anomaly events, updates the risk board, and hands prediction rows to the sink.
    fn emit_predictions(&mut self) {
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

/// Every partition's task. [`Pipelines`] runs each on a thread of its own; tests drive them
/// round by round with their own clock ([`Partitions::tick`]).
pub struct Partitions {
    tasks: Vec<PartitionTask>,
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
    pub fn new(receivers: Vec<PartitionReceiver>, config: &PipelineConfig, sink: Arc<dyn Sink>) -> Self {
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
        Self { tasks, stats, sink, config: config.clone() }
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

    /// Reads one partition's state as a checkpoint file holds it ([`PartitionState::encode_into`]).
    ///
    /// # Errors
    /// When the bytes are damaged or were taken under other resolutions.
    pub fn decode_state(&self, bytes: &[u8]) -> Result<(Windows, Watermark, Predictor), SnapshotError> {
        let mut r = Reader::new(bytes);
        let settings = (self.config.allowed_lateness, self.config.idle_timeout);
        let (windows, watermark) = snapshot::decode_from(&mut r, self.config.resolutions.clone(), settings)?;
        let predictor = Predictor::decode_from(&mut r, self.config.predict.clone())?;
        r.finish()?;
        Ok((windows, watermark, predictor))
    }

    /// Continues from the checkpoint of `epoch`: each partition's state from `states` (one per
    /// partition of the checkpoint, in order, from [`Partitions::decode_state`]), and output from
    /// here on in epoch `epoch + 1`.
    pub fn restore(&mut self, epoch: Epoch, states: Vec<(Windows, Watermark, Predictor)>) {
        let decoded = if states.len() == self.tasks.len() { states } else { self.repartition(states) };
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

    /// Runs one round of every partition, one after another, at wall-clock time `now` without
    /// waiting for data, then the sink's time-based work; whether any partition found data.
    pub fn tick(&mut self, now: i64) -> bool {
        let mut found = false;
        for task in &mut self.tasks {
            found |= task.round(Duration::ZERO, || now);
        }
        if let Err(e) = self.sink.tick() {
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
        for task in &mut self.tasks {
            task.emit_closed(true);
        }
        if let Err(e) = self.sink.flush() {
            error!(error = %e, "Flushing the sink failed.");
        }
        self.publish();
    }

    fn publish(&self) {
        for task in &self.tasks {
            self.stats.publish(task.receiver.partition, &task.totals);
        }
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
    /// Starts every partition's loop on a thread of its own, with `clock` for the idle rule, and
    /// a driver thread that runs the sink's time-based work until they end, then flushes it.
    ///
    /// # Errors
    /// When a thread cannot be created.
    pub fn start(partitions: Partitions, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let Partitions { tasks, stats, sink, config } = partitions;
        let wait = config.tick;
        let mut loops = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (clock, stats) = (clock.clone(), stats.clone());
            let name = format!("augur-partition-{}", task.receiver.partition);
            loops.push(std::thread::Builder::new().name(name).spawn(move || task.run(wait, &*clock, &stats))?);
        }
        let driver = std::thread::Builder::new().name("augur-pipelines".into()).spawn(move || {
            while !loops.iter().all(JoinHandle::is_finished) {
                std::thread::sleep(SINK_TICK_EVERY);
                if let Err(e) = sink.tick() {
                    error!(error = %e, "The sink's periodic work failed.");
                }
            }
            for partition in loops {
                if partition.join().is_err() {
                    error!("A partition's loop panicked.");
                }
            }
            if let Err(e) = sink.flush() {
                error!(error = %e, "Flushing the sink failed.");
            }
        })?;
        Ok(Self { driver, stats: stats.clone() })
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
