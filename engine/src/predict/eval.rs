//! `augur eval nab --data DIR --out DIR [--labels FILE]`: every CSV under `DIR/<category>/` fed
//! through the same detector code the pipelines run, with one configuration for every file;
//! results in NAB's layout (`OUT/augur/<category>/augur_<file>.csv`: `timestamp,value,anomaly_score`,
//! one row per input row, in order); given labels, the three NAB scores.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::detector::{Detector, Params};
use super::nab::{self, CrossValidated, ProfileScore, ScoredFile};

/// One NAB data file: its `<category>/<file>.csv` key, timestamps, values as written and parsed.
#[derive(Debug, Clone)]
pub struct Series {
    /// `<category>/<file>.csv`, the key of NAB's labels.
    pub key: String,
    /// Each row's timestamp text and seconds since the epoch.
    pub times: Vec<(String, i64)>,
    /// Each row's value text and number.
    pub values: Vec<(String, f64)>,
}

/// Every `<category>/<file>.csv` under `dir`, sorted by key.
///
/// # Errors
/// When the tree cannot be read or a file is not `timestamp,value` rows.
pub fn read_tree(dir: &Path) -> anyhow::Result<Vec<Series>> {
    let mut out = Vec::new();
    let categories = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for category in categories {
        let category = category?.path();
        if !category.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&category)? {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "csv") {
                out.push(read_csv(dir, &path)?);
            }
        }
    }
    if out.is_empty() {
        bail!("no <category>/<file>.csv under {}", dir.display());
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn read_csv(root: &Path, path: &Path) -> anyhow::Result<Series> {
    let key = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut series = Series { key, times: Vec::new(), values: Vec::new() };
    for (number, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut columns = line.split(',');
        let (Some(time), Some(value)) = (columns.next(), columns.next()) else {
            bail!("{}: line {}: expected `timestamp,value`", path.display(), number + 1);
        };
        let seconds = nab::parse_time(time).with_context(|| format!("{}: line {}", path.display(), number + 1))?;
        let parsed: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("{}: line {}: value {value:?} is not a number", path.display(), number + 1))?;
        series.times.push((time.to_owned(), seconds));
        series.values.push((value.to_owned(), parsed));
    }
    Ok(series)
}

/// The scores of a labelled run.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Leaving one category out, per profile: the headline.
    pub cross_validated: Vec<CrossValidated>,
    /// Every file at once, per profile.
    pub scores: Vec<ProfileScore>,
}

/// The category of a `<category>/<file>.csv` key.
fn category(key: &str) -> &str {
    key.split_once('/').map_or("", |(category, _)| category)
}

/// Scores every row of `series` with a fresh detector.
pub fn detect(series: &Series) -> Vec<f64> {
    detect_with(series, &Params::DEFAULT)
}

/// [`detect`] with other constants than the pipelines'.
pub fn detect_with(series: &Series, params: &Params) -> Vec<f64> {
    let mut detector = Detector::default();
    series
        .times
        .iter()
        .zip(&series.values)
        .map(|(&(_, time), &(_, value))| detector.score_with(params, time * 1_000_000_000, value))
        .collect()
}

/// The detector variants nested cross-validation chooses among: the detector as it runs first,
/// then every combination of three long-run weights, three range margins and six daily profiles
/// (hourly weights 0.03, 0.07 and 0.15 after 7 values, 0.07 after 3 and after 12, and none): 54
/// in all, the constants the development set chose each with a neighbour on either side.
pub fn variants() -> Vec<Params> {
    let mut out = vec![Params::DEFAULT];
    for long in [0.002, 0.005, 0.01] {
        for range_margin in [0.0, 0.02, 0.05] {
            let profiles = [(0.03, 7), (0.07, 3), (0.07, 7), (0.07, 12), (0.15, 7), (0.07, u8::MAX)];
            for (hourly, hourly_min) in profiles {
                let params = Params { long, hourly, hourly_min, range_margin };
                if params != Params::DEFAULT {
                    out.push(params);
                }
            }
        }
    }
    out
}

/// Writes `OUT/<detector>/<category>/<detector>_<file>.csv`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_results(out: &Path, detector: &str, series: &Series, scores: &[f64]) -> anyhow::Result<PathBuf> {
    let (category, file) = series.key.split_once('/').unwrap_or(("", &series.key));
    let dir = out.join(detector).join(category);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{detector}_{file}"));
    let mut text = String::from("timestamp,value,anomaly_score\n");
    for (((time, _), (value, _)), score) in series.times.iter().zip(&series.values).zip(scores) {
        text.push_str(&format!("{time},{value},{score}\n"));
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads a NAB results tree (`DIR/<category>/<detector>_<file>.csv`) back as scored files with the
/// windows of `labels`.
///
/// # Errors
/// When a labelled file has no results or a results file cannot be read.
pub fn read_results(
    dir: &Path,
    detector: &str,
    labels: &std::collections::BTreeMap<String, Vec<(i64, i64)>>,
) -> anyhow::Result<Vec<ScoredFile>> {
    labels
        .iter()
        .map(|(key, windows)| {
            let (category, file) = key.split_once('/').unwrap_or(("", key));
            let path = dir.join(category).join(format!("{detector}_{file}"));
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut scored = ScoredFile { windows: windows.clone(), ..ScoredFile::default() };
            for (number, line) in text.lines().enumerate().skip(1) {
                let columns: Vec<&str> = line.split(',').collect();
                let (Some(time), Some(score)) = (columns.first(), columns.get(2)) else {
                    bail!("{}: line {}: expected `timestamp,value,anomaly_score`", path.display(), number + 1);
                };
                scored.times.push(nab::parse_time(time)?);
                scored
                    .scores
                    .push(score.trim().parse().with_context(|| format!("{}: line {}", path.display(), number + 1))?);
            }
            Ok(scored)
        })
        .collect()
}

/// The scores of `files`, one line per profile.
pub fn report(scores: &[ProfileScore]) -> String {
    let mut out = String::new();
    for s in scores {
        out.push_str(&format!(
            "{:<20} {:>7.2}   (threshold {:.6}, raw {:.3})\n",
            s.profile.name, s.normalized, s.threshold, s.raw
        ));
    }
    out
}

/// The cross-validated scores, one line per profile with the threshold each held-out group got.
pub fn report_cross_validated(scores: &[CrossValidated], groups: &[String]) -> String {
    let mut out = String::new();
    for s in scores {
        let thresholds: Vec<String> =
            groups.iter().zip(&s.thresholds).map(|(group, t)| format!("{group} {t:.4}")).collect();
        out.push_str(&format!(
            "{:<20} {:>7.2}   (raw {:.3}; thresholds {})\n",
            s.profile.name,
            s.normalized,
            s.raw,
            thresholds.join(", ")
        ));
    }
    out
}

/// Each file's category index, and the categories in order.
fn categories(tree: &[Series]) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = tree.iter().map(|s| category(&s.key).to_owned()).collect();
    names.dedup();
    let groups = tree.iter().map(|s| names.iter().position(|c| c == category(&s.key)).unwrap_or_default()).collect();
    (names, groups)
}

/// `tree`'s files with their scores and labelled windows.
fn labelled(
    tree: &[Series],
    results: Vec<Vec<f64>>,
    labels: &std::collections::BTreeMap<String, Vec<(i64, i64)>>,
) -> Vec<ScoredFile> {
    tree.iter()
        .zip(results)
        .map(|(series, scores)| {
            let windows = labels.get(&series.key).cloned().unwrap_or_default();
            ScoredFile { times: series.times.iter().map(|t| t.1).collect(), scores, windows }
        })
        .collect()
}

/// `augur eval nab --nested`: nested leave-one-category-out over [`variants`]. For each category,
/// the variant and threshold that score best on the other six are chosen and the category is
/// scored with them; prints the held-out total per profile and what each fold chose. Writes no
/// results.
fn run_nested(
    tree: &[Series],
    labels: &std::collections::BTreeMap<String, Vec<(i64, i64)>>,
    categories: &[String],
    groups: &[usize],
) -> Vec<nab::Nested> {
    let variants = variants();
    let started = std::time::Instant::now();
    // Per variant: its folds, and its standard score on every file at once.
    let (folds, development): (Vec<nab::Folds>, Vec<f64>) = variants
        .iter()
        .map(|params| {
            let files = labelled(tree, tree.iter().map(|series| detect_with(series, params)).collect(), labels);
            (nab::Folds::new(&files, groups), nab::score(&files)[0].normalized)
        })
        .unzip();
    let nested = nab::nested_cross_validate(&folds);
    println!(
        "nested leave one category out ({} variants, {} categories, {:.1?}; each category scored with the variant and \
         threshold chosen on the others):",
        variants.len(),
        categories.len(),
        started.elapsed()
    );
    for n in &nested {
        println!("{:<20} {:>7.2}   (raw {:.3})", n.profile.name, n.normalized, n.raw);
        for (category, &v) in categories.iter().zip(&n.chosen) {
            let p = variants[v];
            println!(
                "    {category:<22} long {} hourly {} after {} range margin {}",
                p.long,
                p.hourly,
                if p.hourly_min == u8::MAX { "never".to_owned() } else { p.hourly_min.to_string() },
                p.range_margin
            );
        }
    }
    let best = (1..variants.len()).fold(0, |best, v| if development[v] > development[best] { v } else { best });
    println!(
        "every file at once: the detector as it runs {:.2}; the best variant {:.2} ({:?})",
        development[0], development[best], variants[best]
    );
    nested
}

/// The command: detect every file, write the results, and score them when `labels` is given:
/// first leaving one category out (each category scored at the threshold the others choose:
/// what a detector gets on data it was not tuned on), then on every file at once; with `nested`,
/// then the nested cross-validation of the detector's constants.
///
/// # Errors
/// When the data cannot be read or the results written.
pub fn run(data: &Path, out: &Path, labels: Option<&Path>, nested: bool) -> anyhow::Result<Option<Evaluation>> {
    let tree = read_tree(data)?;
    let started = std::time::Instant::now();
    let mut points = 0;
    let mut results = Vec::with_capacity(tree.len());
    for series in &tree {
        let scores = detect(series);
        points += scores.len();
        write_results(out, "augur", series, &scores)?;
        results.push(scores);
    }
    println!(
        "scored {} files, {points} rows in {:.2?}; results under {}",
        tree.len(),
        started.elapsed(),
        out.join("augur").display()
    );
    let Some(labels) = labels else { return Ok(None) };
    let labels = nab::read_labels(labels)?;
    let (categories, groups) = categories(&tree);
    let files = labelled(&tree, results, &labels);
    let cross_validated = nab::cross_validate(&files, &groups);
    println!(
        "leave one category out ({} categories; each scored at the threshold chosen on the others):",
        categories.len()
    );
    print!("{}", report_cross_validated(&cross_validated, &categories));
    let scores = nab::score(&files);
    println!("every file at once (one threshold chosen on the files it scores):");
    print!("{}", report(&scores));
    if nested {
        run_nested(&tree, &labels, &categories, &groups);
    }
    Ok(Some(Evaluation { cross_validated, scores }))
}
