//! The Numenta Anomaly Benchmark's scorer, as NAB v1.1 defines it (`nab/sweeper.py`): per-row
//! weights from where a detection falls relative to the labelled anomaly windows, one threshold
//! per profile chosen to maximise the score summed over every file, and the score normalised
//! between a detector that never fires (0) and a perfect one (100).
//!
//! Rules (see `../shared/nab/README.md`): the first `min(⌊0.15 n⌋, 750)` rows of a file are a
//! probation period and not scored. A row inside a window of width `w` (rows) at relative position
//! `p = −(right − i + 1) / w` weighs `A_tp × s(p) / s(−1)`, with `s(p) = 2σ(−5p) − 1` (and `−1`
//! from `p ≥ 3`); a window counts once, by its best (earliest) detection, or `−A_fn` without one.
//! A row outside every window weighs `A_fp × s(d)`, `d` its distance after the previous window's
//! right edge over that window's width − 1 (`s(3) = −1` when no window precedes it).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};

/// Weights of one NAB profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Its name in NAB's results.
    pub name: &'static str,
    /// Weight of a detected window.
    pub tp: f64,
    /// Weight of a detection outside every window.
    pub fp: f64,
    /// Cost of a window without a detection.
    pub fn_: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile { name: "standard", tp: 1.0, fp: 0.11, fn_: 1.0 },
    Profile { name: "reward_low_FP_rate", tp: 1.0, fp: 0.22, fn_: 1.0 },
    Profile { name: "reward_low_FN_rate", tp: 1.0, fp: 0.11, fn_: 2.0 },
];

/// One data file's rows with their anomaly scores, and its labelled windows.
#[derive(Debug, Clone, Default)]
pub struct ScoredFile {
    /// Row timestamps (seconds since the epoch), in file order.
    pub times: Vec<i64>,
    /// The detector's score per row, in [0, 1].
    pub scores: Vec<f64>,
    /// Anomaly windows as (start, end) timestamps (seconds), in order.
    pub windows: Vec<(i64, i64)>,
}

/// A scorable row: its score, its window (an index over all files) if inside one, and its
/// weight before the profile's factors.
#[derive(Debug, Clone, Copy)]
struct Row {
    score: f64,
    window: Option<usize>,
    unweighted: f64,
}

/// The result for one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileScore {
    /// The profile.
    pub profile: Profile,
    /// The chosen threshold.
    pub threshold: f64,
    /// The raw score summed over the files at that threshold.
    pub raw: f64,
    /// 100 × (raw − null) / (perfect − null).
    pub normalized: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 * sigmoid(-5.0 * position) - 1.0
    }
}

/// The scorable rows of `file`; window indices start at `first_window`. Returns the rows and the
/// number of windows with at least one scorable row.
fn sweep(file: &ScoredFile, first_window: usize) -> (Vec<Row>, usize) {
    let n = file.times.len();
    let probation = ((0.15 * n as f64).floor() as usize).min(750);
    let index_of = |t: i64| file.times.iter().position(|&x| x == t);
    let mut windows = file.windows.iter().enumerate().peekable();
    let mut current: Option<(usize, usize, f64)> = None; // (window, right index, width)
    let mut previous: Option<(usize, f64)> = None; // (right index, width)
    let mut rows = Vec::with_capacity(n.saturating_sub(probation));
    let mut scored_windows = std::collections::BTreeSet::new();
    for (i, (&time, &score)) in file.times.iter().zip(&file.scores).enumerate() {
        if let Some(&(w, &(start, end))) = windows.peek() {
            if time == start {
                windows.next();
                if let (Some(left), Some(right)) = (index_of(start), index_of(end)) {
                    current = Some((first_window + w, right, (right - left + 1) as f64));
                }
            }
        }
        let (window, unweighted) = match current {
            Some((w, right, width)) => {
                let position = -((right as f64) - (i as f64) + 1.0) / width;
                (Some(w), scaled_sigmoid(position) / scaled_sigmoid(-1.0))
            }
            None => {
                let past = previous.map_or(3.0, |(right, width)| (i as f64 - right as f64).abs() / (width - 1.0));
                (None, scaled_sigmoid(past))
            }
        };
        if i >= probation {
            rows.push(Row { score, window, unweighted });
            if let Some(w) = window {
                scored_windows.insert(w);
            }
        }
        if let Some((_, right, width)) = current {
            if i == right {
                previous = Some((right, width));
                current = None;
            }
        }
    }
    (rows, scored_windows.len())
}

/// Scores `files` under every profile, each with the threshold that maximises its summed score.
pub fn score(files: &[ScoredFile]) -> Vec<ProfileScore> {
    let mut rows = Vec::new();
    let mut windows = 0;
    let mut counted = 0;
    for file in files {
        let (file_rows, scored) = sweep(file, windows);
        windows += file.windows.len();
        counted += scored;
        rows.extend(file_rows);
    }
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    PROFILES.iter().map(|&profile| best_threshold(&rows, windows, counted, profile)).collect()
}

/// Sweeps the thresholds from above every score down to the lowest, keeping the best total.
fn best_threshold(sorted: &[Row], windows: usize, counted: usize, profile: Profile) -> ProfileScore {
    // Windows without a scorable row (inside the probation period) count for nothing.
    let mut best_in: Vec<Option<f64>> = vec![None; windows];
    for row in sorted {
        if let Some(w) = row.window {
            best_in[w] = Some(-profile.fn_);
        }
    }
    let mut total: f64 = best_in.iter().flatten().sum();
    let (mut best, mut threshold) = (total, 1.1);
    let mut i = 0;
    while i < sorted.len() {
        let level = sorted[i].score;
        while i < sorted.len() && sorted[i].score == level {
            let row = sorted[i];
            match row.window {
                None => total += row.unweighted * profile.fp,
                Some(w) => {
                    let weighted = row.unweighted * profile.tp;
                    if let Some(current) = best_in[w].filter(|&c| weighted > c) {
                        total += weighted - current;
                        best_in[w] = Some(weighted);
                    }
                }
            }
            i += 1;
        }
        if total > best {
            (best, threshold) = (total, level);
        }
    }
    let null = -profile.fn_ * counted as f64;
    let perfect = profile.tp * counted as f64;
    let normalized = if perfect > null { 100.0 * (best - null) / (perfect - null) } else { 0.0 };
    ProfileScore { profile, threshold, raw: best, normalized }
}

/// The result for one profile under leave-one-group-out cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossValidated {
    /// The profile.
    pub profile: Profile,
    /// Per group, in order: the threshold chosen on every other group's files.
    pub thresholds: Vec<f64>,
    /// The raw score of every file at its group's threshold, summed.
    pub raw: f64,
    /// 100 × (raw − null) / (perfect − null), over every file.
    pub normalized: f64,
}

/// Scores `files` the way a detector meets data it was not tuned on: for each group (`groups[i]`
/// is file `i`'s), the threshold is the one that maximises the summed score of the *other*
/// groups' files, and the group's files are scored at it. The held-out scores are summed and
/// normalised over all files, as [`score`] normalises.
pub fn cross_validate(files: &[ScoredFile], groups: &[usize]) -> Vec<CrossValidated> {
    let folds = Folds::new(files, groups);
    PROFILES
        .iter()
        .enumerate()
        .map(|(p, &profile)| {
            let thresholds = folds.folds.iter().map(|fold| fold[p].threshold).collect();
            let raw = folds.folds.iter().map(|fold| fold[p].held_out).sum();
            CrossValidated { profile, thresholds, raw, normalized: folds.normalized(profile, raw) }
        })
        .collect()
}

/// One group held out under one profile (raw sums).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fold {
    /// The threshold chosen on the other groups' files.
    pub threshold: f64,
    /// The other groups' score at it.
    pub training: f64,
    /// The held-out group's score at it.
    pub held_out: f64,
}

/// Every fold of leaving one group out: `folds[group][profile]`, profiles in [`PROFILES`]' order.
#[derive(Debug, Clone)]
pub struct Folds {
    /// Per group, per profile.
    pub folds: Vec<[Fold; 3]>,
    /// Windows with a scorable row, over every file: what normalising counts.
    counted: usize,
}

impl Folds {
    /// The folds of `files`, `groups[i]` being file `i`'s group.
    pub fn new(files: &[ScoredFile], groups: &[usize]) -> Self {
        let mut rows: Vec<(usize, Row)> = Vec::new();
        let (mut windows, mut counted) = (0, 0);
        for (file, &group) in files.iter().zip(groups) {
            let (file_rows, scored) = sweep(file, windows);
            windows += file.windows.len();
            counted += scored;
            rows.extend(file_rows.into_iter().map(|row| (group, row)));
        }
        rows.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
        let group_count = groups.iter().max().map_or(0, |g| g + 1);
        let folds = (0..group_count)
            .map(|group| {
                let (held_out, training): (Vec<_>, Vec<_>) = rows.iter().partition(|(g, _)| *g == group);
                let training: Vec<Row> = training.into_iter().map(|&(_, row)| row).collect();
                let held_out: Vec<Row> = held_out.into_iter().map(|&(_, row)| row).collect();
                PROFILES.map(|profile| {
                    let best = best_threshold(&training, windows, 0, profile);
                    let held_out = raw_at(&held_out, windows, best.threshold, profile);
                    Fold { threshold: best.threshold, training: best.raw, held_out }
                })
            })
            .collect();
        Self { folds, counted }
    }

    /// `raw` normalised over every file, as [`score`] normalises.
    pub fn normalized(&self, profile: Profile, raw: f64) -> f64 {
        let (null, perfect) = (-profile.fn_ * self.counted as f64, profile.tp * self.counted as f64);
        if perfect > null {
            100.0 * (raw - null) / (perfect - null)
        } else {
            0.0
        }
    }
}

/// The result for one profile of nested cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Nested {
    /// The profile.
    pub profile: Profile,
    /// Per group, in order: the variant chosen on every other group's files.
    pub chosen: Vec<usize>,
    /// The held-out groups' raw scores, summed.
    pub raw: f64,
    /// 100 × (raw − null) / (perfect − null), over every file.
    pub normalized: f64,
}

/// Nested leave-one-group-out over detector variants (`variants[v]`: the folds of the same files
/// scored by variant `v`): for each group, the variant *and* threshold are the ones the other
/// groups score best with, and the group is scored with them. What choosing constants on a
/// development set is worth on data it has not seen.
///
/// # Panics
/// If `variants` is empty.
pub fn nested_cross_validate(variants: &[Folds]) -> Vec<Nested> {
    let first = &variants[0];
    PROFILES
        .iter()
        .enumerate()
        .map(|(p, &profile)| {
            let chosen: Vec<usize> = (0..first.folds.len())
                .map(|g| {
                    // The first of equals: variant 0 is the detector as it runs.
                    let training = |v: usize| variants[v].folds[g][p].training;
                    (1..variants.len()).fold(0, |best, v| if training(v) > training(best) { v } else { best })
                })
                .collect();
            let raw = chosen.iter().enumerate().map(|(g, &v)| variants[v].folds[g][p].held_out).sum();
            Nested { profile, chosen, raw, normalized: first.normalized(profile, raw) }
        })
        .collect()
}

/// The summed score of `rows` when every row scoring at least `threshold` is a detection.
fn raw_at(rows: &[Row], windows: usize, threshold: f64, profile: Profile) -> f64 {
    let mut best_in: Vec<Option<f64>> = vec![None; windows];
    let mut total = 0.0;
    for row in rows {
        let detected = row.score >= threshold;
        match row.window {
            None if detected => total += row.unweighted * profile.fp,
            None => {}
            Some(w) => {
                let current = best_in[w].get_or_insert(-profile.fn_);
                if detected && row.unweighted * profile.tp > *current {
                    *current = row.unweighted * profile.tp;
                }
            }
        }
    }
    total + best_in.iter().flatten().sum::<f64>()
}

/// Seconds since the epoch of `YYYY-MM-DD HH:MM:SS` (a fractional part is ignored).
///
/// # Errors
/// When `text` is not such a timestamp.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("not a timestamp `YYYY-MM-DD HH:MM:SS`: {text:?}");
    let (date, time) = text.trim().split_once(' ').ok_or_else(bad)?;
    let numbers = |s: &str, sep: char| -> anyhow::Result<Vec<i64>> {
        s.split(sep).map(|p| p.parse::<f64>().map(|v| v as i64).map_err(|_| bad())).collect()
    };
    let (Ok([y, m, day]), Ok([hh, mm, ss])) =
        (<[i64; 3]>::try_from(numbers(date, '-')?), <[i64; 3]>::try_from(numbers(time, ':')?))
    else {
        bail!(bad());
    };
    Ok(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// NAB's labels file: `{"<category>/<file>.csv": [[start, end], ...], ...}`.
///
/// # Errors
/// When the file cannot be read or is not in that shape.
pub fn read_labels(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<(i64, i64)>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).with_context(|| format!("{}: not NAB labels", path.display()))?;
    raw.into_iter()
        .map(|(file, windows)| {
            let windows = windows
                .iter()
                .map(|(start, end)| Ok((parse_time(start)?, parse_time(end)?)))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("{}: windows of {file}", path.display()))?;
            Ok((file, windows))
        })
        .collect()
}
