//! Point-wise scores of per-row anomaly scores against 0/1 labels, without point adjustment, as
//! the SMD reference scorer (`../shared/smd/score.py`, kept in `tests/data/smd/`) computes them:
//! the best F1 over every threshold, the area under the precision/recall curve, and the F1 at a
//! fixed alarm threshold; per host, and pooled over hosts (one threshold for the fleet).

/// A threshold sweep's result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sweep {
    /// The best point-wise F1 over every threshold (predict anomalous iff score ≥ threshold).
    pub best_f1: f64,
    /// The threshold of the best F1.
    pub threshold: f64,
    /// Area under the precision/recall curve (trapezoids, from recall 0 at precision 1).
    pub auprc: f64,
}

/// One pass down every distinct score.
pub fn sweep(scores: &[f64], labels: &[bool]) -> Sweep {
    let anomalous = labels.iter().filter(|&&l| l).count();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut best = Sweep { best_f1: 0.0, threshold: f64::NAN, auprc: 0.0 };
    let (mut previous_recall, mut previous_precision) = (0.0, 1.0);
    let mut curve_done = anomalous == 0;
    let mut i = 0;
    while i < order.len() {
        let level = scores[order[i]];
        while i < order.len() && scores[order[i]] == level {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let precision = tp as f64 / (tp + fp) as f64;
        let recall = if anomalous == 0 { 0.0 } else { tp as f64 / anomalous as f64 };
        if !curve_done {
            best.auprc += (recall - previous_recall) * (precision + previous_precision) / 2.0;
            (previous_recall, previous_precision) = (recall, precision);
            curve_done = tp == anomalous;
        }
        let f1 = f1(precision, recall);
        if f1 > best.best_f1 {
            (best.best_f1, best.threshold) = (f1, level);
        }
    }
    best
}

/// The point-wise F1 when every score from `threshold` up is an alarm.
pub fn f1_at(scores: &[f64], labels: &[bool], threshold: f64) -> f64 {
    Counts::at(scores, labels, threshold).f1()
}

/// Alarms that were right, alarms that were wrong, and anomalous rows.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tp: usize,
    fp: usize,
    anomalous: usize,
}

impl Counts {
    fn at(scores: &[f64], labels: &[bool], threshold: f64) -> Self {
        let mut counts = Self::default();
        for (&score, &label) in scores.iter().zip(labels) {
            let alarm = score >= threshold;
            counts.tp += usize::from(alarm && label);
            counts.fp += usize::from(alarm && !label);
            counts.anomalous += usize::from(label);
        }
        counts
    }

    fn add(self, other: Self) -> Self {
        Self { tp: self.tp + other.tp, fp: self.fp + other.fp, anomalous: self.anomalous + other.anomalous }
    }

    fn f1(self) -> f64 {
        let precision = if self.tp + self.fp == 0 { 0.0 } else { self.tp as f64 / (self.tp + self.fp) as f64 };
        let recall = if self.anomalous == 0 { 0.0 } else { self.tp as f64 / self.anomalous as f64 };
        f1(precision, recall)
    }
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// Scores of a fleet: each host's labelled rows and their scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FleetScores {
    /// Mean over hosts of each host's best F1 (each its own threshold): the published protocol.
    pub mean_best_f1: f64,
    /// Mean over hosts of the area under the precision/recall curve.
    pub mean_auprc: f64,
    /// The best F1 of one threshold for every host's rows together: what an operator can set.
    pub pooled_best_f1: f64,
    /// The F1 of every host's rows together at the fixed alarm threshold: what an operator gets.
    pub fixed_f1: f64,
    /// Leaving one host out: each host alarmed at the pooled best threshold of the *other*
    /// hosts, the F1 of all hosts' rows together: a threshold chosen on machines other than the
    /// one it is used on.
    pub leave_one_out_f1: f64,
}

/// Scores `hosts` (scores, labels), with `threshold` as the fixed alarm threshold.
pub fn fleet(hosts: &[(Vec<f64>, Vec<bool>)], threshold: f64) -> FleetScores {
    let sweeps: Vec<Sweep> = hosts.iter().map(|(scores, labels)| sweep(scores, labels)).collect();
    let mean = |f: fn(&Sweep) -> f64| sweeps.iter().map(f).sum::<f64>() / sweeps.len().max(1) as f64;
    let scores: Vec<f64> = hosts.iter().flat_map(|(s, _)| s.iter().copied()).collect();
    let labels: Vec<bool> = hosts.iter().flat_map(|(_, l)| l.iter().copied()).collect();
    FleetScores {
        mean_best_f1: mean(|s| s.best_f1),
        mean_auprc: mean(|s| s.auprc),
        pooled_best_f1: sweep(&scores, &labels).best_f1,
        fixed_f1: f1_at(&scores, &labels, threshold),
        leave_one_out_f1: leave_one_out(hosts).f1(),
    }
}

/// Each host's counts at the threshold best for the other hosts' rows pooled, summed.
fn leave_one_out(hosts: &[(Vec<f64>, Vec<bool>)]) -> Counts {
    (0..hosts.len())
        .map(|held_out| {
            let others = || hosts.iter().enumerate().filter(move |(i, _)| *i != held_out).map(|(_, h)| h);
            let scores: Vec<f64> = others().flat_map(|(s, _)| s.iter().copied()).collect();
            let labels: Vec<bool> = others().flat_map(|(_, l)| l.iter().copied()).collect();
            // No other host, or no anomaly among them: no threshold to learn; nothing alarms.
            let threshold = sweep(&scores, &labels).threshold;
            let threshold = if threshold.is_nan() { f64::INFINITY } else { threshold };
            let (scores, labels) = &hosts[held_out];
            Counts::at(scores, labels, threshold)
        })
        .fold(Counts::default(), Counts::add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_ranking_scores_one_and_ties_count_together() {
        let labels = [false, true, false, true];
        let perfect = sweep(&[0.1, 0.9, 0.2, 0.8], &labels);
        assert_eq!((perfect.best_f1, perfect.auprc, perfect.threshold), (1.0, 1.0, 0.8));
        // All tied: one threshold flags everything, precision 0.5 at recall 1.
        let tied = sweep(&[0.5; 4], &labels);
        assert!((tied.best_f1 - 2.0 / 3.0).abs() < 1e-12 && (tied.auprc - 0.75).abs() < 1e-12, "{tied:?}");
        assert!((f1_at(&[0.1, 0.9, 0.6, 0.2], &labels, 0.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn leaving_a_host_out_uses_the_threshold_of_the_others() {
        // Host a ranks its anomaly at 0.9, host b at 0.4: b's own best threshold (0.4) flags
        // b's anomaly, but a's (0.9) misses it, and b's (0.4) applied to a flags a's normal 0.5.
        let a = (vec![0.1, 0.9, 0.5], vec![false, true, false]);
        let b = (vec![0.1, 0.4, 0.2], vec![false, true, false]);
        let fleet = fleet(&[a, b], 0.5);
        assert_eq!(fleet.mean_best_f1, 1.0);
        // a at 0.4: 1 right, 1 wrong; b at 0.9: nothing. Precision 1/2, recall 1/2.
        assert!((fleet.leave_one_out_f1 - 0.5).abs() < 1e-12, "{fleet:?}");
    }
}
