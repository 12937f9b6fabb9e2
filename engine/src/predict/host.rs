//! One anomaly score per host, from all its fields at once: streaming, causal, with state that
//! grows with the number of fields only (`HostScorer::state_bytes`).
//!
//! Two stages, after the per-field detector's (`super::detector`):
//! 1. **Deviation of the row**: each field's residual against its own long-run mean, in its own
//!    long-run deviations (scale-free: a field of bytes and a field of percent weigh alike),
//!    capped; the row's deviation is the largest of its fields' residuals (the L-infinity norm:
//!    on SMD a failure shows in a few of a host's metrics, and the root mean square over all of
//!    them diluted it).
//! 2. **Likelihood**: how unusual the mean of the last half hour of deviations is against this
//!    host's own history of deviations (a Gaussian tail on a log scale), so one threshold serves
//!    hosts with many noisy fields and hosts with few quiet ones.
//!
//! Four of the constants (the long-run weight, the cap, the norm and the recent span) were chosen
//! on the six SMD development machines by leaving one machine out, among 31 variants; the
//! procedure and both its figures are in docs/predictions.md.

use super::detector::{learn, log10_upper_tail};

/// Weight of a new value in a field's long-run mean and variance (about a week of minutes).
const LONG: f64 = 1.0 / 10_080.0;
/// A field's residual is capped at this many deviations.
const CAP: f64 = 30.0;
/// Weight of a new deviation in the mean and variance of deviations.
const DEVIATIONS: f64 = 1.0 / 10_000.0;
/// Deviations averaged for the likelihood (half an hour of minutes).
const RECENT: usize = 30;
/// Rows before the history of deviations starts; no score above 0 until it holds `RECENT`.
const WARMUP: u32 = 100;
/// A likelihood tail of 10^-`LOG_SCALE` scores 1.
const LOG_SCALE: f64 = 10.0;

/// One field's long-run statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Field {
    mean: f64,
    var: f64,
    /// The smallest and largest value seen: a deviation's floor is a share of the range, so a
    /// field that was constant until now does not divide by zero.
    low: f64,
    high: f64,
}

/// A host's scorer: one running mean and deviation per field, in a fixed order, and the deviation history.
#[derive(Debug, Clone, PartialEq)]
pub struct HostScorer {
    fields: Vec<Field>,
    recent: [f64; RECENT],
    deviation_mean: f64,
    deviation_var: f64,
    seen: u32,
}

impl HostScorer {
    /// A scorer for `fields` fields.
    pub fn new(fields: usize) -> Self {
        Self {
            fields: vec![Field::default(); fields],
            recent: [0.0; RECENT],
            deviation_mean: 0.0,
            deviation_var: 0.0,
            seen: 0,
        }
    }

    /// Bytes of state for a host of `fields` fields.
    pub fn state_bytes(fields: usize) -> usize {
        std::mem::size_of::<Self>() + fields * std::mem::size_of::<Field>()
    }

    /// Scores one row (a value per field, in the scorer's order; a missing value is `NaN` and is
    /// left out) and learns from it. The score is in [0, 1].
    pub fn score(&mut self, row: &[f64]) -> f64 {
        // The first values are averaged (weight 1/n) until the long-run weight is the larger.
        let n = f64::from(self.seen) + 1.0;
        let rate = LONG.max(1.0 / n);
        let mut deviation = 0.0f64;
        for (field, &value) in self.fields.iter_mut().zip(row) {
            if !value.is_finite() {
                continue;
            }
            if self.seen == 0 {
                *field = Field { mean: value, var: 0.0, low: value, high: value };
                continue;
            }
            let floor = 1e-9 + 1e-2 * (field.high - field.low).max(1e-3 * field.mean.abs());
            let residual = ((value - field.mean).abs() / (field.var.sqrt() + floor)).min(CAP);
            deviation = deviation.max(residual);
            learn(&mut field.mean, &mut field.var, value, rate);
            (field.low, field.high) = (field.low.min(value), field.high.max(value));
        }
        self.recent[self.seen as usize % RECENT] = deviation;
        let count = RECENT.min(self.seen as usize + 1);
        let recent = self.recent[..count].iter().sum::<f64>() / count as f64;
        let z = (recent - self.deviation_mean) / (self.deviation_var.sqrt() + 1e-6);
        // The history of deviations starts after the warm-up: the first rows' deviations, while
        // each field's statistics are still forming, are up to the cap and would hold the
        // likelihood down for as long as the history remembers (a week of minutes).
        if self.seen >= WARMUP {
            let learned = f64::from(self.seen - WARMUP) + 1.0;
            learn(&mut self.deviation_mean, &mut self.deviation_var, deviation, DEVIATIONS.max(1.0 / learned));
        }
        self.seen = self.seen.saturating_add(1);
        let score = if self.seen as usize <= WARMUP as usize + RECENT {
            0.0
        } else {
            (log10_upper_tail(z) / LOG_SCALE).min(1.0)
        };
        if score.is_finite() {
            score
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_in_a_few_fields_scores_above_a_steady_host() {
        let mut steady = HostScorer::new(10);
        let mut failing = HostScorer::new(10);
        let row = |t: usize, shift: f64| -> Vec<f64> {
            (0..10).map(|f| ((t * 7 + f * 13) % 17) as f64 / 17.0 + if f < 2 { shift } else { 0.0 }).collect()
        };
        let (mut steady_peak, mut failing_peak) = (0.0f64, 0.0f64);
        for t in 0..3000 {
            let late = t >= 2900;
            steady_peak = steady_peak.max(steady.score(&row(t, 0.0)));
            failing_peak = failing_peak.max(failing.score(&row(t, if late { 1.0 } else { 0.0 })));
            if !late {
                assert!(failing_peak < 0.5, "a steady host stays under 0.5 at row {t}: {failing_peak}");
            }
        }
        assert!(steady_peak < 0.5, "{steady_peak}");
        assert!(failing_peak >= 0.5, "two fields moved past their range: {failing_peak}");
    }

    #[test]
    fn state_grows_with_the_fields_only() {
        assert!(HostScorer::state_bytes(40) < 40 * 40 + 128);
        assert_eq!(HostScorer::state_bytes(200) - HostScorer::state_bytes(10), 190 * 32);
    }
}
