//! The pipelines: a rayon pool that drains every partition channel, one task per partition per
//! tick, each owning its partition's state.
//!
//! Today a pipeline counts what it drains (points and values per region); window aggregation
//! builds on this loop. State is moved into the task that drains it (`par_iter_mut`), so no lock
//! is taken on the per-point path; totals are published once per tick.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use augur_ingest::{PartitionReceiver, PointBatch};
use rayon::prelude::*;

/// Batches one task takes from its channel per tick, so one busy partition cannot hold a thread
/// forever while others wait.
const MAX_BATCHES_PER_TICK: usize = 64;

/// What one partition has processed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionTotals {
    /// Points drained.
    pub points: u64,
    /// Field values drained.
    pub values: u64,
    /// Batches drained.
    pub batches: u64,
    /// Points per region.
    pub by_region: BTreeMap<String, u64>,
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

/// The running pipelines. They stop once every sender of every partition is gone and the
/// channels are empty, so whatever was admitted is processed before [`Pipelines::join`] returns.
#[derive(Debug)]
pub struct Pipelines {
    driver: JoinHandle<()>,
    stats: Arc<PipelineStats>,
}

struct PartitionTask {
    receiver: PartitionReceiver,
    totals: PartitionTotals,
    disconnected: bool,
}

impl PartitionTask {
    /// Drains up to [`MAX_BATCHES_PER_TICK`] batches; whether it found any.
    fn drain(&mut self) -> bool {
        let mut found = false;
        for _ in 0..MAX_BATCHES_PER_TICK {
            match self.receiver.recv_timeout(Duration::ZERO) {
                Ok(batch) => {
                    found = true;
                    self.process(&batch);
                }
                Err(disconnected) => {
                    self.disconnected = disconnected;
                    break;
                }
            }
        }
        found
    }

    fn process(&mut self, batch: &PointBatch) {
        self.totals.points += batch.len() as u64;
        self.totals.values += batch.value_count() as u64;
        self.totals.batches += 1;
        let mut last: Option<(&str, u64)> = None;
        // Points of one region come in runs, so count runs instead of looking up every point.
        for point in batch.iter() {
            let region = point.region();
            match &mut last {
                Some((current, count)) if *current == region => *count += 1,
                _ => {
                    if let Some((r, n)) = last.replace((region, 1)) {
                        self.count_region(r, n);
                    }
                }
            }
        }
        if let Some((r, n)) = last {
            self.count_region(r, n);
        }
    }

    fn count_region(&mut self, region: &str, n: u64) {
        match self.totals.by_region.get_mut(region) {
            Some(count) => *count += n,
            None => {
                self.totals.by_region.insert(region.to_owned(), n);
            }
        }
    }
}

impl Pipelines {
    /// Starts draining `receivers` on a pool of `threads`, waiting `tick` when all are idle.
    ///
    /// # Errors
    /// When the thread pool or the driver thread cannot be created.
    pub fn start(receivers: Vec<PartitionReceiver>, threads: usize, tick: Duration) -> std::io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("augur-pipeline-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let stats =
            Arc::new(PipelineStats { partitions: Mutex::new(vec![PartitionTotals::default(); receivers.len()]) });
        let mut tasks: Vec<PartitionTask> = receivers
            .into_iter()
            .map(|receiver| PartitionTask { receiver, totals: PartitionTotals::default(), disconnected: false })
            .collect();
        let published = stats.clone();
        let driver = std::thread::Builder::new().name("augur-pipelines".into()).spawn(move || loop {
            let found = pool.install(|| tasks.par_iter_mut().map(PartitionTask::drain).reduce(|| false, |a, b| a || b));
            *published.partitions.lock().unwrap_or_else(PoisonError::into_inner) =
                tasks.iter().map(|t| t.totals.clone()).collect();
            if tasks.iter().all(|t| t.disconnected) {
                return;
            }
            if !found {
                std::thread::sleep(tick);
            }
        })?;
        Ok(Self { driver, stats })
    }

    /// The published totals.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Waits until the pipelines have drained everything and stopped (after every sender is
    /// dropped).
    pub fn join(self) {
        let _ = self.driver.join();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use augur_ingest::{RegionRule, Router, Writer};

    use super::*;

    #[test]
    fn pipelines_drain_everything_admitted_and_count_regions() {
        let (router, receivers) = Router::new(3, 64 << 20);
        let pipelines = Pipelines::start(receivers, 2, Duration::from_millis(1)).unwrap();
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
        let regions = RegionRule { tag: "dc".into(), default: "nowhere".into() };
        let writer = Writer::new(Arc::new(router), regions, pool);
        let mut expected = BTreeMap::new();
        for request in 0..20 {
            let body: String = (0..500)
                .map(|i| match i % 3 {
                    0 => format!("cpu,host=h{i},dc=north v={request},w=1i {i}\n"),
                    1 => format!("cpu,host=h{i},dc=south v={request} {i}\n"),
                    _ => format!("cpu,host=h{i} v={request} {i}\n"),
                })
                .collect();
            let mut parsed = writer.parse(body.as_bytes(), augur_ingest::Precision::Nanoseconds, 0, 1, usize::MAX);
            assert_eq!(parsed.error_count, 0);
            writer.admit(&mut parsed).unwrap();
            *expected.entry("north".to_owned()).or_insert(0) += 167;
            *expected.entry("south".to_owned()).or_insert(0) += 167;
            *expected.entry("nowhere".to_owned()).or_insert(0) += 166;
        }
        let stats = pipelines.stats().clone();
        drop(writer); // the last sender: the pipelines drain and stop
        pipelines.join();
        let totals = stats.snapshot();
        assert_eq!(totals.len(), 3);
        let mut by_region = BTreeMap::new();
        for t in &totals {
            for (region, n) in &t.by_region {
                *by_region.entry(region.clone()).or_insert(0) += n;
            }
        }
        assert_eq!(by_region, expected);
        assert_eq!(totals.iter().map(|t| t.points).sum::<u64>(), 10_000);
        assert_eq!(totals.iter().map(|t| t.values).sum::<u64>(), 10_000 + 3_340);
        assert!(totals.iter().all(|t| t.points > 0), "every partition got a share: {totals:?}");
    }
}
