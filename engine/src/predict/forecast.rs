//! Exhaustion forecasts for capacity fields (a disk's used percent rising to 100, free bytes
//! falling to 0): a robust trend over a sliding window gives the time left and a confidence.
//!
//! Values are averaged into 64 buckets spanning the window (so noise averages out and the state
//! stays bounded); at each completed bucket, the Theil–Sen slope (the median of the slopes
//! between every pair of buckets, robust to outliers) and its intercept give the trend, over the
//! newest 16, 32 and 64 buckets, whichever agrees best. The time to exhaustion is when the trend
//! line reaches the limit. The confidence is how much the pairwise slopes agree:
//! 1 − (interquartile range / (2 × |median|)), clamped to [0, 1].

use std::collections::VecDeque;

use crate::snapshot::{Reader, SnapshotError, Writer};

/// Buckets in the window.
pub const BUCKETS: usize = 64;
/// Buckets needed before a forecast.
const MIN_BUCKETS: usize = 8;

/// A forecast: when the field is expected to reach its limit, and how sure the trend is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Event time (ns) the trend reaches the limit.
    pub exhaustion: i64,
    /// Agreement of the pairwise slopes, in [0, 1].
    pub confidence: f64,
}

/// One capacity field's trend.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trend {
    /// Completed buckets: (mid time ns, mean value).
    buckets: VecDeque<(i64, f64)>,
    /// The bucket being filled: its start, sum and count.
    open: Option<(i64, f64, u32)>,
}

impl Trend {
    /// Adds `value` at `time`, with `window` the span of the 64 buckets (ns). When a bucket
    /// completed, returns `Some` with the forecast if the trend heads for `limit` (`Some(None)`:
    /// it does not, or there are too few buckets yet).
    pub fn add(&mut self, time: i64, value: f64, limit: f64, window: i64) -> Option<Option<Forecast>> {
        let width = (window / BUCKETS as i64).max(1);
        let start = time.div_euclid(width).saturating_mul(width);
        // A gap in the data: buckets older than the window no longer describe the trend.
        while self.buckets.front().is_some_and(|&(t, _)| t < time.saturating_sub(window)) {
            self.buckets.pop_front();
        }
        let mut completed = false;
        match &mut self.open {
            Some((open_start, sum, count)) if *open_start == start => {
                *sum += value;
                *count += 1;
            }
            open => {
                if let Some((open_start, sum, count)) = open.take() {
                    self.buckets.push_back((open_start.saturating_add(width / 2), sum / f64::from(count)));
                    if self.buckets.len() > BUCKETS {
                        self.buckets.pop_front();
                    }
                    completed = true;
                }
                *open = Some((start, value, 1));
            }
        }
        if !completed {
            return None;
        }
        Some(if self.buckets.len() < MIN_BUCKETS { None } else { self.forecast(limit) })
    }

    /// The most confident of the Theil–Sen forecasts over the newest 16, 32 and 64 buckets, if the
    /// trend heads for `limit`: a fill that began inside the window is judged on the buckets since,
    /// not diluted by the flat ones before it.
    fn forecast(&self, limit: f64) -> Option<Forecast> {
        [16, 32, BUCKETS]
            .into_iter()
            .filter(|&n| n >= MIN_BUCKETS && (n == 16 || n <= self.buckets.len()))
            .filter_map(|n| self.theil_sen(n.min(self.buckets.len()), limit))
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    }

    /// The Theil–Sen forecast over the newest `n` buckets, if the trend heads for `limit`.
    fn theil_sen(&self, n: usize, limit: f64) -> Option<Forecast> {
        let skip = self.buckets.len() - n;
        let points: Vec<(f64, f64)> = self.buckets.iter().skip(skip).map(|&(t, v)| (t as f64, v)).collect();
        let mut slopes = Vec::with_capacity(points.len() * (points.len() - 1) / 2);
        for (i, &(ti, vi)) in points.iter().enumerate() {
            for &(tj, vj) in &points[i + 1..] {
                if tj > ti {
                    slopes.push((vj - vi) / (tj - ti));
                }
            }
        }
        if slopes.is_empty() {
            return None;
        }
        slopes.sort_by(f64::total_cmp);
        let slope = median(&slopes);
        let (last_time, _) = *points.last()?;
        if slope == 0.0 || !slope.is_finite() {
            return None;
        }
        let mut intercepts: Vec<f64> = points.iter().map(|&(t, v)| v - slope * (t - last_time)).collect();
        intercepts.sort_by(f64::total_cmp);
        let now = median(&intercepts);
        // The side of the limit the series lives on is where its oldest bucket is; a trend away
        // from the limit forecasts nothing, and one already at or past it is exhausted now (so an
        // event stays open while the disk is full).
        let side = (limit - points[0].1).signum();
        if slope.signum() != side {
            return None;
        }
        let left = ((limit - now) / slope).max(0.0);
        let quartile = |q: f64| slopes[((slopes.len() - 1) as f64 * q).round() as usize];
        let confidence = (1.0 - (quartile(0.75) - quartile(0.25)) / (2.0 * slope.abs())).clamp(0.0, 1.0);
        let exhaustion = last_time + left;
        Some(Forecast { exhaustion: exhaustion.min(i64::MAX as f64) as i64, confidence })
    }

    /// Appends its state to `w`.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.buckets.len() as u64);
        for &(t, v) in &self.buckets {
            w.i64(t);
            w.f64(v);
        }
        match self.open {
            None => w.u8(0),
            Some((start, sum, count)) => {
                w.u8(1);
                w.i64(start);
                w.f64(sum);
                w.varint(u64::from(count));
            }
        }
    }

    /// Reads what [`Trend::encode`] wrote.
    ///
    /// # Errors
    /// When the bytes are cut short or damaged.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let mut trend = Self::default();
        let n = r.count()?;
        if n > BUCKETS {
            return Err(r.corrupt());
        }
        for _ in 0..n {
            trend.buckets.push_back((r.i64()?, r.f64()?));
        }
        trend.open = match r.u8()? {
            0 => None,
            1 => Some((r.i64()?, r.f64()?, u32::try_from(r.varint()?).map_err(|_| r.corrupt())?)),
            _ => return Err(r.corrupt()),
        };
        Ok(trend)
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    /// A deterministic noise in [-1, 1].
    fn noise(i: i64) -> f64 {
        (((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f64 - 1000.0) / 1000.0
    }

    #[test]
    fn a_noisy_fill_is_forecast_within_ten_percent_once_a_fifth_is_seen() {
        // A disk filling from 20 % to 100 % over 10 days, one sample a minute, ±3 points of noise.
        let (days, minute) = (10.0, 60_000_000_000i64);
        let total = (days * 24.0 * 60.0) as i64;
        let full_at = total * minute;
        let mut trend = Trend::default();
        let (mut checked, mut worst) = (0, 0.0f64);
        for i in 0..total {
            let time = i * minute;
            let value = 20.0 + 80.0 * i as f64 / total as f64 + 3.0 * noise(i);
            let Some(Some(forecast)) = trend.add(time, value, 100.0, 12 * HOUR) else { continue };
            // From a fifth of the fill on, until the last hour (where a few minutes are 10 %).
            if i >= total / 5 && full_at - time >= HOUR {
                let (left, predicted) = ((full_at - time) as f64, (forecast.exhaustion - time) as f64);
                assert!((predicted - left).abs() <= 0.1 * left, "at minute {i}: {predicted} vs {left}");
                worst = worst.max((predicted - left).abs() / left);
                assert!(forecast.confidence > 0.5, "{forecast:?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked}");
        println!("{checked} forecasts, worst relative error {:.1} %", worst * 100.0);
    }

    #[test]
    fn a_flat_or_receding_series_has_no_forecast() {
        let mut trend = Trend::default();
        for i in 0..2000i64 {
            let falling = 80.0 - i as f64 * 0.01 + noise(i);
            assert!(trend.add(i * 60_000_000_000, falling, 100.0, 12 * HOUR).flatten().is_none());
        }
    }

    #[test]
    fn a_full_disk_stays_exhausted_and_a_gap_forgets_old_buckets() {
        let mut trend = Trend::default();
        let mut last = None;
        // Free bytes falling to 0 and staying there.
        for i in 0..1000i64 {
            let free = (500.0 - i as f64).max(0.0);
            if let Some(forecast) = trend.add(i * 60_000_000_000, free, 0.0, 12 * HOUR) {
                last = forecast.map(|f| (i, f));
            }
        }
        let (at, forecast) = last.expect("still forecast when the disk is full");
        assert!(forecast.exhaustion <= at * 60_000_000_000, "exhausted already: {forecast:?}");
        // A day without data: the trend starts over.
        assert!(trend.add(3000 * 60_000_000_000, 10.0, 0.0, 12 * HOUR).is_some_and(|f| f.is_none()));
        assert!(trend.buckets.len() <= 1, "{}", trend.buckets.len());
    }

    #[test]
    fn state_round_trips() {
        let mut trend = Trend::default();
        for i in 0..500i64 {
            trend.add(i * 60_000_000_000, i as f64, 100.0, 12 * HOUR);
        }
        let mut w = Writer::default();
        trend.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(Trend::decode(&mut r).unwrap(), trend);
        r.finish().unwrap();
    }
}
