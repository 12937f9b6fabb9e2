//! The streaming anomaly detector run for every scored (series, field): one value in, one score
//! in [0, 1] out, in event-time order, with about a hundred bytes of state and no look-ahead.
//!
//! Three parts:
//! 1. **Surprise** of each value, in [0, 1): how far it lies from the long-run mean in long-run
//!    deviations *and* from its hour of the day's usual value (spikes, level shifts, drifts, and a
//!    daily pattern that changes, while a daily peak at its usual hour is no surprise); or, if
//!    larger, how far the recent variance has moved from the long-run variance, up or down (a
//!    series turning noisy, or going quiet).
//! 2. **Likelihood**: how unusual the last three surprises are against this series' own history
//!    of surprises (a Gaussian tail, on a log scale: `−log10(tail) / 10`). A noisy series keeps
//!    its usual surprises; a quiet one needs little to stand out. This second stage, after
//!    Numenta's HTM detector, is what lets one threshold serve every series.
//! 3. **Rules that score 1**: a value beyond the range seen so far by more than 2 % of it, and a
//!    value repeated longer than twice the longest run seen so far (at least 10 times: a dead
//!    sensor).
//!
//! The constants were chosen on the NAB development set in `tests/data/nab` (one configuration for
//! every file; see `docs/predictions.md` for what was tried and the scores); the four that a
//! nested cross-validation chooses again are [`Params`].

use crate::snapshot::{Reader, SnapshotError, Writer};

/// Weight of a new value in the recent mean.
const FAST_MEAN: f64 = 0.05;
/// Weight of a new value in the recent variance.
const FAST_VAR: f64 = 0.02;
/// Weight of a new surprise in the mean and variance of surprises.
const SURPRISES: f64 = 0.0001;
/// Surprises averaged for the likelihood.
const RECENT: usize = 3;
/// Values before any score above 0.
const WARMUP: u32 = 100;
/// The shortest repeated run that can score 1.
const MIN_FLAT_RUN: u32 = 10;
/// A likelihood tail of 10^-`LOG_SCALE` scores 1.
const LOG_SCALE: f64 = 10.0;
const HOUR_NS: i64 = 3_600_000_000_000;

/// The four constants that were chosen on the NAB development set, as one value, so that a
/// cross-validation can choose them again inside each fold (`augur eval nab --nested`, on
/// categories it then does not score). The pipelines run [`Params::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Weight of a new value in the long-run mean and variance.
    pub long: f64,
    /// Weight of a new value in its hour's mean and variance (at least 1 / values seen there).
    pub hourly: f64,
    /// Values an hour of the day must have seen before its profile counts; `u8::MAX`: no daily
    /// profile.
    pub hourly_min: u8,
    /// Beyond the range seen so far by this share of it: score 1.
    pub range_margin: f64,
}

impl Params {
    /// The constants the pipelines run.
    pub const DEFAULT: Self = Self { long: 0.005, hourly: 0.07, hourly_min: 7, range_margin: 0.02 };
}

/// One (series, field)'s state. Laid out in this order (`repr(C)`) so that scoring a value
/// touches as few cache lines as it can: every detector's state is cold when its next value comes
/// (hundreds of thousands of them), so each line read is a miss. The scalars and the hours' counts
/// come first, together; an hour's mean and variance lie side by side.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct Detector {
    long_mean: f64,
    long_var: f64,
    fast_mean: f64,
    fast_var: f64,
    low: f64,
    high: f64,
    recent: [f64; RECENT],
    surprise_mean: f64,
    surprise_var: f64,
    last: f64,
    seen: u32,
    run: u32,
    longest_run: u32,
    /// The daily profile: per hour of the day (UTC), how many values it has seen, and the values'
    /// mean and variance (f32: a profile needs no more precision, and it keeps the state small).
    hourly_seen: [u8; 24],
    hourly: [Hour; 24],
}

/// One hour of the daily profile.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
struct Hour {
    mean: f32,
    var: f32,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            seen: 0,
            long_mean: 0.0,
            long_var: 0.0,
            fast_mean: 0.0,
            fast_var: 0.0,
            low: f64::INFINITY,
            high: f64::NEG_INFINITY,
            recent: [0.0; RECENT],
            surprise_mean: 0.0,
            surprise_var: 0.0,
            last: f64::NAN,
            run: 0,
            longest_run: 0,
            hourly_seen: [0; 24],
            hourly: [Hour::default(); 24],
        }
    }
}

/// Moves `mean` and `var` towards `value` with weight `rate` (exponentially weighted).
pub(crate) fn learn(mean: &mut f64, var: &mut f64, value: f64, rate: f64) {
    let d = value - *mean;
    *mean += rate * d;
    *var = (1.0 - rate) * (*var + rate * d * d);
}

/// `1 − exp(−z²/2)`: 0 for no deviation, near 1 from about 3.
fn squash(z: f64) -> f64 {
    1.0 - (-0.5 * z * z).exp()
}

impl Detector {
    /// Scores `value`, taken at `time` (ns since the epoch), and learns from it. A value so large
    /// that the statistics overflow starts the detector afresh rather than silencing it for good.
    #[inline]
    pub fn score(&mut self, time: i64, value: f64) -> f64 {
        self.score_with(&Params::DEFAULT, time, value)
    }

    /// [`Detector::score`] with other constants than the pipelines'.
    #[inline]
    pub fn score_with(&mut self, params: &Params, time: i64, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let hour = time.div_euclid(HOUR_NS).rem_euclid(24) as usize;
        let score = self.learn_and_score(params, hour, value);
        let state =
            [self.long_mean, self.long_var, self.fast_mean, self.fast_var, self.surprise_mean, self.surprise_var];
        // Only this value's hour can have left the finite range: every other one was checked
        // when it last learned (a reset makes them all 0).
        if !score.is_finite() || state.iter().any(|v| !v.is_finite()) || !self.hourly[hour].var.is_finite() {
            *self = Self::default();
            return 0.0;
        }
        score
    }

    #[inline]
    fn learn_and_score(&mut self, params: &Params, hour: usize, value: f64) -> f64 {
        let hourly = self.learn_hour(params, hour, value);
        if self.seen == 0 {
            (self.long_mean, self.fast_mean, self.low, self.high, self.last) = (value, value, value, value, value);
            self.seen = 1;
            return 0.0;
        }
        let n = f64::from(self.seen);
        // 1. Surprise, before learning the value.
        let floor = 1e-9 + 1e-3 * self.long_mean.abs();
        let level = squash((value - self.long_mean).abs() / (self.long_var.sqrt() + floor));
        let spread = squash((self.fast_var.max(1e-12) / self.long_var.max(1e-12)).ln() / 2.0);
        let surprise = level.min(hourly).max(spread);
        let d = value - self.fast_mean;
        self.fast_var = (1.0 - FAST_VAR) * (self.fast_var + FAST_VAR * d * d);
        self.fast_mean += FAST_MEAN * d;
        learn(&mut self.long_mean, &mut self.long_var, value, params.long.max(1.0 / n));

        // 2. Likelihood of the recent surprises.
        self.recent[(self.seen as usize - 1) % RECENT] = surprise;
        let count = RECENT.min(self.seen as usize);
        let recent = self.recent[..count].iter().sum::<f64>() / count as f64;
        let z = (recent - self.surprise_mean) / (self.surprise_var.sqrt() + 1e-6);
        learn(&mut self.surprise_mean, &mut self.surprise_var, surprise, SURPRISES.max(1.0 / n));
        let mut score = if self.seen < WARMUP { 0.0 } else { (log10_upper_tail(z) / LOG_SCALE).min(1.0) };

        // 3. Rules.
        let margin = params.range_margin * (self.high - self.low);
        let outside = value > self.high + margin || value < self.low - margin;
        (self.low, self.high) = (self.low.min(value), self.high.max(value));
        if value == self.last {
            self.run += 1;
        } else {
            self.longest_run = self.longest_run.max(self.run);
            self.run = 0;
        }
        self.last = value;
        let stuck = self.run == (2 * self.longest_run).max(MIN_FLAT_RUN);
        if self.seen >= WARMUP && (outside || stuck) {
            score = 1.0;
        }
        self.seen = self.seen.saturating_add(1);
        score
    }

    /// Appends its state to `w` (for checkpoints).
    pub fn encode(&self, w: &mut Writer) {
        w.varint(u64::from(self.seen));
        for v in [self.long_mean, self.long_var, self.fast_mean, self.fast_var, self.low, self.high] {
            w.f64(v);
        }
        self.recent.iter().for_each(|&v| w.f64(v));
        for v in [self.surprise_mean, self.surprise_var, self.last] {
            w.f64(v);
        }
        w.varint(u64::from(self.run));
        w.varint(u64::from(self.longest_run));
        for (hour, seen) in self.hourly.iter().zip(self.hourly_seen) {
            w.f64(f64::from(hour.mean));
            w.f64(f64::from(hour.var));
            w.u8(seen);
        }
    }

    /// Reads what [`Detector::encode`] wrote.
    ///
    /// # Errors
    /// When the bytes are cut short.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let count =
            |r: &mut Reader<'_>| -> Result<u32, SnapshotError> { u32::try_from(r.varint()?).map_err(|_| r.corrupt()) };
        let mut d = Self { seen: count(r)?, ..Self::default() };
        for v in [&mut d.long_mean, &mut d.long_var, &mut d.fast_mean, &mut d.fast_var, &mut d.low, &mut d.high] {
            *v = r.f64()?;
        }
        for v in &mut d.recent {
            *v = r.f64()?;
        }
        for v in [&mut d.surprise_mean, &mut d.surprise_var, &mut d.last] {
            *v = r.f64()?;
        }
        (d.run, d.longest_run) = (count(r)?, count(r)?);
        for (hour, seen) in d.hourly.iter_mut().zip(&mut d.hourly_seen) {
            (hour.mean, hour.var, *seen) = (r.f64()? as f32, r.f64()? as f32, r.u8()?);
        }
        // Scoring checks only the hour it learns (see `score`): a profile that is not finite
        // everywhere is not a state scoring can leave.
        if d.hourly.iter().any(|h| !h.var.is_finite()) {
            return Err(r.corrupt());
        }
        Ok(d)
    }

    /// The surprise of `value` against its hour's profile (0 until the hour has seen enough),
    /// then the profile learns it.
    #[inline]
    fn learn_hour(&mut self, params: &Params, hour: usize, value: f64) -> f64 {
        let (mean, var, seen) =
            (f64::from(self.hourly[hour].mean), f64::from(self.hourly[hour].var), self.hourly_seen[hour]);
        let surprise = if seen >= params.hourly_min && params.hourly_min < u8::MAX {
            squash((value - mean).abs() / (var.sqrt() + 1e-9 + 1e-3 * mean.abs()))
        } else {
            0.0
        };
        let (mut mean, mut var) = (mean, var);
        learn(&mut mean, &mut var, value, params.hourly.max(1.0 / (f64::from(seen) + 1.0)));
        self.hourly[hour] = Hour { mean: mean as f32, var: var as f32 };
        self.hourly_seen[hour] = seen.saturating_add(1);
        surprise
    }
}

/// `−log10` of the standard normal upper tail `Q(z)`, accurate far into the tail: through
/// `erfc` in its exponential form (Numerical Recipes' `erfcc`, relative error < 1.2e-7), so a z of
/// 10 gives 23.1, not infinity.
pub(crate) fn log10_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    // ln(erfc(|x|)); Q(z) = erfc(x) / 2.
    let ln_erfc = t.ln() - a * a + poly;
    if x >= 0.0 {
        -(ln_erfc - std::f64::consts::LN_2) / std::f64::consts::LN_10
    } else {
        -(1.0 - 0.5 * ln_erfc.exp()).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    #[test]
    fn the_tail_matches_known_values() {
        for (z, q) in [(0.0, 0.5), (1.0, 0.158_655_25), (3.0, 1.349_898e-3), (6.0, 9.865_876e-10), (-2.0, 0.977_249_87)]
        {
            let got = log10_upper_tail(z);
            let want = -f64::log10(q);
            assert!((got - want).abs() < 1e-5 * want.max(1.0), "z = {z}: {got} vs {want}");
        }
        assert!((log10_upper_tail(10.0) - 23.117).abs() < 0.01);
    }

    #[test]
    fn a_spike_after_a_steady_signal_scores_high_and_the_signal_low() {
        let mut detector = Detector::default();
        let scores: Vec<f64> = (0..500)
            .map(|i| 50.0 + ((i * 7919) % 13) as f64 * 0.1)
            .chain([90.0])
            .enumerate()
            .map(|(i, v)| detector.score(i as i64 * MINUTE, v))
            .collect();
        assert!(scores[..500].iter().all(|&s| s < 1.0), "no rule fires on the steady part");
        assert_eq!(scores[500], 1.0, "a value far beyond the range seen");
    }

    #[test]
    fn a_stuck_sensor_scores_one_once() {
        let mut detector = Detector::default();
        let scores: Vec<f64> = (0..300)
            .map(|i| 20.0 + ((i * 31) % 7) as f64)
            .chain([23.5; 30])
            .enumerate()
            .map(|(i, v)| detector.score(i as i64 * MINUTE, v))
            .collect();
        let ones = scores[300..].iter().filter(|&&s| s == 1.0).count();
        assert_eq!(ones, 1, "one score of 1 for one stuck run: {:?}", &scores[300..]);
    }

    #[test]
    fn state_is_small() {
        assert!(std::mem::size_of::<Detector>() <= 512, "{} bytes", std::mem::size_of::<Detector>());
    }
}
