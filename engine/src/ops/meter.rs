//! Rates from counters: a sample of the totals every second, the last ten seconds kept, a rate is
//! the difference between the newest and the oldest sample over the time between them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use augur_ingest::Writer;

use crate::pipeline::PipelineStats;

/// The span rates are measured over.
const WINDOW: Duration = Duration::from_secs(10);
/// How often the server samples (see `meter_loop` in `server.rs`).
pub const EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    /// Points admitted per partition.
    partitions: Vec<u64>,
    /// Points drained per region.
    regions: BTreeMap<String, u64>,
    points: u64,
    values: u64,
}

/// Rates over the last 10 s (zeros until two samples exist).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Seconds between the samples compared.
    pub window_seconds: f64,
    /// Points admitted per second, per partition.
    pub partitions: Vec<f64>,
    /// Points drained per second, per region.
    pub regions: BTreeMap<String, f64>,
    /// Points accepted per second over every protocol.
    pub points: f64,
    /// Field values accepted per second.
    pub values: f64,
}

/// The recent samples.
#[derive(Debug, Default)]
pub struct LoadMeter {
    samples: Mutex<VecDeque<Sample>>,
}

impl LoadMeter {
    /// Takes a sample of `writers` (one per protocol; they share the router) and `pipelines`.
    pub fn sample(&self, writers: &[(&'static str, Writer)], pipelines: &PipelineStats) {
        let Some((_, first)) = writers.first() else { return };
        let partitions = first.router().stats().iter().map(|s| s.points_in.load(Ordering::Relaxed)).collect();
        let mut regions = BTreeMap::new();
        for totals in pipelines.snapshot() {
            for (region, n) in totals.by_region {
                *regions.entry(region).or_default() += n;
            }
        }
        let sum = |read| super::total(writers, read);
        let sample = Sample {
            at: Instant::now(),
            partitions,
            regions,
            points: sum(|s| s.points_accepted.load(Ordering::Relaxed)),
            values: sum(|s| s.values_accepted.load(Ordering::Relaxed)),
        };
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back(sample);
        while samples.len() > 2 && samples[1].at.elapsed() >= WINDOW {
            samples.pop_front();
        }
    }

    /// The rates now.
    pub fn rates(&self) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(old), Some(new)) = (samples.front(), samples.back()) else { return Rates::default() };
        let seconds = new.at.duration_since(old.at).as_secs_f64();
        if seconds <= 0.0 {
            return Rates { partitions: vec![0.0; new.partitions.len()], ..Rates::default() };
        }
        let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
        Rates {
            window_seconds: seconds,
            partitions: new
                .partitions
                .iter()
                .enumerate()
                .map(|(i, &n)| rate(n, old.partitions.get(i).copied().unwrap_or(0)))
                .collect(),
            regions: new
                .regions
                .iter()
                .map(|(region, &n)| (region.clone(), rate(n, old.regions.get(region).copied().unwrap_or(0))))
                .collect(),
            points: rate(new.points, old.points),
            values: rate(new.values, old.values),
        }
    }
}
