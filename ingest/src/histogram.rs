//! A latency histogram of atomics, for the Prometheus `histogram` type: one observation is two
//! relaxed increments and an add, cheap enough for every request and every log commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from half a millisecond (an fsync on a fast disk) to
/// ten seconds (a request stuck behind a full disk).
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Observations by bucket, their count and sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last counts what is above every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or under it)`, cumulative, as Prometheus wants.
    pub buckets: Vec<(f64, u64)>,
    /// All observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The cumulative counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len());
        for (i, &bound) in BUCKETS.iter().enumerate() {
            total += self.counts[i].load(Ordering::Relaxed);
            buckets.push((bound, total));
        }
        total += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let sum_seconds = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        HistogramSnapshot { buckets, count: total, sum_seconds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_overflow_is_only_in_the_count() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 3, 40, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.buckets[0], (0.0005, 1));
        assert_eq!(s.buckets[1], (0.001, 2));
        assert_eq!(s.buckets[3], (0.005, 4));
        assert_eq!(s.buckets.last(), Some(&(10.0, 5)));
        assert!((s.sum_seconds - 20.047).abs() < 1e-9);
    }
}
