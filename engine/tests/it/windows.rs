//! Window aggregation against a naive oracle, and the watermark rules.

use std::collections::BTreeMap;

use augur_storage::sketch::{DdSketch, ALPHA};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use crate::harness::{config, Harness, Row, SECOND};

/// One generated value: series (host number), field, event time, value.
#[derive(Debug, Clone)]
struct Sample {
    host: u8,
    field: &'static str,
    time: i64,
    value: f64,
}

fn line(s: &Sample) -> String {
    format!("cpu,host=h{},region=r{} {}={:?} {}\n", s.host, s.host % 3, s.field, s.value, s.time)
}

fn series_key(s: &Sample) -> String {
    format!("cpu,host=h{},region=r{}", s.host, s.host % 3)
}

/// What the oracle keeps per window: all values with their arrival index.
type OracleWindow = Vec<(i64, usize, f64)>;

/// The naive oracle: every window of every resolution from all samples at once.
fn oracle(samples: &[Sample], resolutions: &[(i64, String)]) -> BTreeMap<(String, String, String, i64), OracleWindow> {
    let mut windows: BTreeMap<_, OracleWindow> = BTreeMap::new();
    for (arrival, s) in samples.iter().enumerate() {
        for (nanos, name) in resolutions {
            let start = s.time.div_euclid(*nanos) * nanos;
            windows
                .entry((series_key(s), s.field.to_owned(), name.clone(), start))
                .or_default()
                .push((s.time, arrival, s.value));
        }
    }
    windows
}

fn check_row(row: &Row, values: &OracleWindow) -> Result<(), TestCaseError> {
    prop_assert_eq!(row.count, values.len() as u64, "{:?}", row);
    let sum: f64 = values.iter().map(|v| v.2).sum();
    prop_assert!((row.sum - sum).abs() <= 1e-9 * (1.0 + sum.abs()), "sum {} vs {}", row.sum, sum);
    let min = values.iter().map(|v| v.2).fold(f64::INFINITY, f64::min);
    let max = values.iter().map(|v| v.2).fold(f64::NEG_INFINITY, f64::max);
    prop_assert_eq!((row.min, row.max), (min, max));
    // First: earliest time, ties to the earliest arrival; last: latest time, ties to the latest.
    let first = values.iter().min_by_key(|v| (v.0, v.1)).unwrap().2;
    let last = values.iter().max_by_key(|v| (v.0, v.1)).unwrap().2;
    prop_assert_eq!((row.first, row.last), (first, last), "{:?}", row);
    let mut sorted: Vec<f64> = values.iter().map(|v| v.2).collect();
    sorted.sort_by(f64::total_cmp);
    for (q, estimate) in [0.5, 0.9, 0.95, 0.99].into_iter().zip(row.quantiles) {
        let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
        prop_assert!((estimate - exact).abs() <= ALPHA * exact.abs() + 1e-9, "p{} {} vs {}", q, estimate, exact);
    }
    Ok(())
}

/// Samples in arrival order: each is delayed by less than `lateness`, so none is late.
fn stream(lateness: i64) -> impl Strategy<Value = Vec<Sample>> {
    proptest::collection::vec(
        // Times on a 250 ms grid, so points often sit exactly on window boundaries.
        (
            0u8..6,
            prop::sample::select(vec!["usage", "load"]),
            (0i64..480).prop_map(|q| q * SECOND / 4),
            -100.0..100.0f64,
            0..lateness,
        ),
        1..250,
    )
    .prop_map(|raw| {
        let mut samples: Vec<(i64, Sample)> = raw
            .into_iter()
            .map(|(host, field, time, value, delay)| {
                let value = (value * 10.0).round() / 10.0;
                (time + delay, Sample { host, field, time, value })
            })
            .collect();
        samples.sort_by_key(|(arrival, _)| *arrival);
        samples.into_iter().map(|(_, s)| s).collect()
    })
}

/// Runs `samples` through `partitions` partitions in bodies of `body` lines, ticking between
/// bodies, then flushes; returns the rows and the per-partition totals.
fn run(samples: &[Sample], partitions: usize, resolutions: &[i64], lateness: i64, body: usize) -> (Vec<Row>, u64) {
    let config = config(resolutions, lateness, i64::MAX);
    let mut harness = Harness::new(partitions, &config);
    for chunk in samples.chunks(body.max(1)) {
        harness.write(&chunk.iter().map(line).collect::<String>());
        harness.tick(0);
    }
    let totals = harness.finish(0);
    for t in &totals {
        assert_eq!(t.points, t.aggregated + t.late, "conservation in a partition: {t:?}");
    }
    let late = totals.iter().map(|t| t.late).sum();
    assert_eq!(harness.raw_rows(), samples.len(), "every point leaves as raw data");
    (harness.rows(), late)
}

fn resolution_sets() -> impl Strategy<Value = Vec<i64>> {
    (prop::sample::select(vec![SECOND, 5 * SECOND, 10 * SECOND]), proptest::collection::vec(2i64..5, 0..3)).prop_map(
        |(base, multipliers)| {
            let mut resolutions = vec![base];
            for m in multipliers {
                resolutions.push(resolutions.last().unwrap() * m);
            }
            resolutions
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_window_equals_the_oracle(
        samples in stream(10 * SECOND),
        partitions in 1usize..=8,
        resolutions in resolution_sets(),
        body in 1usize..60,
    ) {
        let (rows, late) = run(&samples, partitions, &resolutions, 10 * SECOND, body);
        prop_assert_eq!(late, 0, "disorder within the lateness makes nothing late");
        let names: Vec<(i64, String)> = resolutions
            .iter()
            .map(|&n| (n, augur_engine::window::Resolution::new(std::time::Duration::from_nanos(n as u64)).name))
            .collect();
        let expected = oracle(&samples, &names);
        prop_assert_eq!(rows.len(), expected.len(), "one row per (series, field, window)");
        for row in &rows {
            let key = (row.series_key.clone(), row.field.clone(), row.resolution.clone(), row.start);
            let values = expected.get(&key);
            prop_assert!(values.is_some(), "unexpected window {:?}", key);
            check_row(row, values.unwrap())?;
        }
        // Coarse windows are the merge of the fine windows inside them.
        for pair in names.windows(2) {
            let (fine, coarse) = (&pair[0], &pair[1]);
            for row in rows.iter().filter(|r| r.resolution == coarse.1) {
                let parts: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.resolution == fine.1 && r.series_key == row.series_key && r.field == row.field)
                    .filter(|r| r.start >= row.start && r.start < row.start + coarse.0)
                    .collect();
                prop_assert_eq!(parts.iter().map(|r| r.count).sum::<u64>(), row.count);
                let mut merged = DdSketch::new();
                for part in &parts {
                    merged.merge(&DdSketch::from_bytes(&part.sketch).unwrap());
                }
                prop_assert_eq!(merged.to_bytes(), row.sketch.clone());
            }
        }
    }
}

fn sorted_without_partial(mut rows: Vec<Row>) -> Vec<Row> {
    for row in &mut rows {
        row.partial = false;
    }
    rows.sort_by(|a, b| {
        (&a.series_key, &a.field, &a.resolution, a.start).cmp(&(&b.series_key, &b.field, &b.resolution, b.start))
    });
    rows
}

#[test]
fn the_partition_count_does_not_change_results() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let samples = stream(10 * SECOND).new_tree(&mut runner).unwrap().current();
    let resolutions = [10 * SECOND, 60 * SECOND];
    let one = sorted_without_partial(run(&samples, 1, &resolutions, 10 * SECOND, 17).0);
    assert!(!one.is_empty());
    for partitions in [2, 7] {
        let other = sorted_without_partial(run(&samples, partitions, &resolutions, 10 * SECOND, 17).0);
        assert_eq!(one, other, "{partitions} partitions");
    }
}

#[test]
fn a_late_point_is_counted_and_kept_raw_and_changes_no_emitted_window() {
    let mut harness = Harness::new(1, &config(&[10 * SECOND], 10 * SECOND, i64::MAX));
    harness.write(&format!("cpu,host=a,region=eu v=1 {}\n", 5 * SECOND));
    harness.write(&format!("cpu,host=a,region=eu v=2 {}\n", 25 * SECOND));
    harness.tick(0); // watermark 15 s: the window [0 s, 10 s) closes
    let emitted = harness.rows();
    assert_eq!(emitted.len(), 1);
    assert_eq!((emitted[0].start, emitted[0].count, emitted[0].partial), (0, 1, false));

    harness.write(&format!("cpu,host=a,region=eu v=100 {}\n", 7 * SECOND));
    harness.tick(0);
    let totals = harness.finish(0);
    assert_eq!(totals[0].late, 1);
    assert_eq!(totals[0].late_by_region.get("eu"), Some(&1));
    assert_eq!(totals[0].points, totals[0].aggregated + totals[0].late);
    assert_eq!(harness.raw_rows(), 3, "the late point is kept raw");
    let rows = harness.rows();
    let first_window: Vec<&Row> = rows.iter().filter(|r| r.start == 0).collect();
    assert_eq!(first_window.len(), 1, "the emitted window is never emitted again");
    assert_eq!(first_window[0], &emitted[0]);
    let second: Vec<&Row> = rows.iter().filter(|r| r.start == 20 * SECOND).collect();
    assert_eq!((second[0].count, second[0].partial), (1, true), "flushed at shutdown, marked partial");
}

#[test]
fn an_idle_partition_closes_its_windows_by_the_wall_clock() {
    let (lateness, idle) = (10 * SECOND, 30 * SECOND);
    let mut harness = Harness::new(4, &config(&[10 * SECOND], lateness, idle));
    let now = 1_000 * SECOND;
    // Three series: at least one of the four partitions stays silent throughout.
    harness.write(&(0..3).map(|h| format!("cpu,host=h{h} v=1 {now}\n")).collect::<String>());
    harness.tick(now);
    assert!(harness.rows().is_empty(), "watermark {} s: the window is still open", (now - lateness) / SECOND);
    harness.tick(now + idle - 1);
    assert!(harness.rows().is_empty(), "not idle yet");
    harness.tick(now + idle); // idle: watermark = now + idle - lateness, past the window's end
    let rows = harness.rows();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| !r.partial && r.start == now));
    let totals = harness.finish(now + idle);
    assert!(totals.iter().any(|t| t.points == 0), "a silent partition: {totals:?}");
}

#[test]
fn a_window_closes_exactly_when_the_watermark_reaches_its_end() {
    let mut harness = Harness::new(1, &config(&[10 * SECOND], 10 * SECOND, i64::MAX));
    harness.write(&format!("cpu,host=a v=1 {}\n", 5 * SECOND));
    harness.write(&format!("cpu,host=a v=2 {}\n", 20 * SECOND - 1));
    harness.tick(0);
    assert!(harness.rows().is_empty(), "watermark 1 ns before the end of [0 s, 10 s): still open");
    harness.write(&format!("cpu,host=a v=3 {}\n", 20 * SECOND));
    harness.tick(0);
    let rows = harness.rows();
    assert_eq!(rows.len(), 1, "watermark at 10 s closes [0 s, 10 s)");
    assert_eq!((rows[0].start, rows[0].count, rows[0].partial), (0, 1, false));
    // A point exactly at the watermark is on time; one just behind it is late.
    harness.write(&format!("cpu,host=a v=4 {}\n", 10 * SECOND));
    harness.write(&format!("cpu,host=a v=5 {}\n", 10 * SECOND - 1));
    let totals = harness.finish(0);
    assert_eq!((totals[0].aggregated, totals[0].late), (4, 1));
    let second = harness.rows().into_iter().find(|r| r.start == 10 * SECOND).unwrap();
    assert_eq!((second.count, second.first, second.last), (2, 4.0, 2.0));
}

#[test]
fn a_flush_closes_every_window_of_more_series_than_one_round_closes() {
    // 40,000 series in one window of two resolutions: a round closes 16,384 series at most, so
    // the shutdown flush takes several rounds, and every window must still leave exactly once.
    let series = 40_000;
    let mut harness = Harness::new(1, &config(&[10 * SECOND, 60 * SECOND], 10 * SECOND, i64::MAX));
    let body: String = (0..series).map(|h| format!("cpu,host=h{h} v={h} {}\n", 5 * SECOND)).collect();
    harness.write(&body);
    harness.finish(0);
    let rows = harness.rows();
    for resolution in ["10s", "1m"] {
        let mut keys: Vec<&str> =
            rows.iter().filter(|r| r.resolution == resolution).map(|r| r.series_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), series, "{resolution}: one row per series");
    }
    assert_eq!(rows.len(), 2 * series);
    assert!(rows.iter().all(|r| r.partial && r.count == 1));
}
