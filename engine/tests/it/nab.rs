//! The NAB scorer reproduces the published scores of the reference detectors on the development
//! set to two decimals (`tests/data/nab/README.md` lists them), and the detector keeps its promises.

use std::path::PathBuf;

use augur_engine::predict::detector::Detector;
use augur_engine::predict::eval::{detect, read_results, read_tree};
use augur_engine::predict::nab::{read_labels, score, ScoredFile};

fn nab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nab")
}

fn assert_scores(detector: &str, expected: [f64; 3]) {
    let labels = read_labels(&nab_dir().join("labels.json")).unwrap();
    let files = read_results(&nab_dir().join("reference").join(detector), detector, &labels).unwrap();
    let got: Vec<f64> = score(&files).iter().map(|s| (s.normalized * 100.0).round() / 100.0).collect();
    assert_eq!(got, expected, "{detector}: standard, reward_low_FP_rate, reward_low_FN_rate");
}

#[test]
fn the_scorer_reproduces_numenta_htm_on_the_development_set() {
    assert_scores("numenta", [71.21, 64.99, 75.87]);
}

#[test]
fn the_scorer_reproduces_windowed_gaussian_on_the_development_set() {
    assert_scores("windowedGaussian", [36.71, 21.40, 45.17]);
}

#[test]
fn scores_are_deterministic_and_never_look_ahead() {
    for series in read_tree(&nab_dir().join("data")).unwrap().iter().take(6) {
        let values: Vec<(i64, f64)> =
            series.times.iter().zip(&series.values).map(|(t, v)| (t.1 * 1_000_000_000, v.1)).collect();
        let run = |values: &[(i64, f64)]| -> Vec<f64> {
            let mut detector = Detector::default();
            values.iter().map(|&(t, v)| detector.score(t, v)).collect()
        };
        let whole = run(&values);
        assert_eq!(whole, run(&values), "{}: same input, same scores", series.key);
        let half = values.len() / 2;
        assert_eq!(run(&values[..half]), whole[..half], "{}: a prefix scores the same alone", series.key);
        assert!(whole.iter().all(|s| (0.0..=1.0).contains(s)), "{}: scores in [0, 1]", series.key);
    }
}

#[test]
fn the_detector_keeps_its_score_on_the_development_set() {
    // Measured 69.15 / 61.58 / 74.17 (docs/predictions.md); a change that lowers it must say why.
    let labels = read_labels(&nab_dir().join("labels.json")).unwrap();
    let files: Vec<ScoredFile> = read_tree(&nab_dir().join("data"))
        .unwrap()
        .iter()
        .map(|series| ScoredFile {
            times: series.times.iter().map(|t| t.1).collect(),
            scores: detect(series),
            windows: labels.get(&series.key).cloned().unwrap_or_default(),
        })
        .collect();
    let standard = score(&files)[0].normalized;
    assert!(standard >= 69.1, "NAB standard score {standard:.2}");
}
