//! Anomaly detector throughput on one core: the NAB development set's 179k rows, each file through
//! its own detector (as the pipelines score each series), and 100k detectors fed round-robin (one
//! point per series per step, a fleet's shape, where state does not stay in cache). Prints the
//! state size per (series, field).
//!
//! `cargo bench -p augur-suite --bench detector`; throughput in scored points.

use std::hint::black_box;
use std::path::Path;

use augur_engine::predict::detector::Detector;
use augur_engine::predict::eval::read_tree;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SERIES: usize = 100_000;
const STEPS: usize = 20;

fn detector(c: &mut Criterion) {
    println!("state per (series, field): {} bytes", std::mem::size_of::<Detector>());
    let tree = read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nab/data")).expect("the NAB data");
    let files: Vec<Vec<(i64, f64)>> =
        tree.iter().map(|s| s.times.iter().zip(&s.values).map(|(t, v)| (t.1 * 1_000_000_000, v.1)).collect()).collect();
    let rows: usize = files.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("detector");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("nab_179k_rows", |b| {
        b.iter(|| {
            for values in &files {
                let mut detector = Detector::default();
                for &(t, v) in values {
                    black_box(detector.score(t, v));
                }
            }
        })
    });
    group.throughput(Throughput::Elements((SERIES * STEPS) as u64));
    let mut fleet = vec![Detector::default(); SERIES];
    let mut step = 0u64;
    group.bench_function("fleet_100k_series", |b| {
        b.iter(|| {
            for _ in 0..STEPS {
                step += 1;
                for (i, detector) in fleet.iter_mut().enumerate() {
                    let value = 50.0 + ((step.wrapping_mul(31) ^ i as u64) % 97) as f64 * 0.1;
                    black_box(detector.score(step as i64 * 60_000_000_000, value));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, detector);
criterion_main!(benches);
