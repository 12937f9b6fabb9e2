//! Anomaly detector throughput on one core: the NAB development set's 179k rows, each file through
//! its own detector (as the pipelines score each series), and 100k detectors fed round-robin (one
//! point per series per step, a fleet's shape, where state does not stay in cache). Prints the
//! state size per (series, field). Then the per-host scorer: the vendored SMD cut (2 hosts of 38
//! fields, 9,000 rows each), and 10k hosts of 38 fields fed round-robin; it prints the state per
//! host for 10, 40 and 200 fields.
//!
//! `cargo bench -p augur-suite --bench detector`; throughput in scored points (for the host
//! scorer, field values: a row of 38 fields is 38).

use std::hint::black_box;
use std::path::Path;

use augur_engine::predict::detector::Detector;
use augur_engine::predict::eval::read_tree;
use augur_engine::predict::host::HostScorer;
use augur_engine::predict::multivariate::read_hosts;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SERIES: usize = 100_000;
const STEPS: usize = 20;
const HOSTS: usize = 10_000;
const HOST_FIELDS: usize = 38;

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

fn host_scorer(c: &mut Criterion) {
    for fields in [10, 40, 200] {
        println!("state per host of {fields} fields: {} bytes", HostScorer::state_bytes(fields));
    }
    let hosts = read_hosts(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smd/data")).expect("the SMD cut");
    let values: usize = hosts.iter().map(|h| h.rows.len() * h.fields.len()).sum();
    let mut group = c.benchmark_group("host_scorer");
    group.throughput(Throughput::Elements(values as u64));
    group.bench_function("smd_cut_2_hosts", |b| {
        b.iter(|| {
            for host in &hosts {
                let mut scorer = HostScorer::new(host.fields.len());
                for row in &host.rows {
                    black_box(scorer.score(row));
                }
            }
        })
    });
    group.throughput(Throughput::Elements((HOSTS * HOST_FIELDS * STEPS) as u64));
    let mut fleet = vec![HostScorer::new(HOST_FIELDS); HOSTS];
    let mut row = [0.0; HOST_FIELDS];
    let mut step = 0u64;
    group.bench_function("fleet_10k_hosts_38_fields", |b| {
        b.iter(|| {
            for _ in 0..STEPS {
                step += 1;
                for (i, scorer) in fleet.iter_mut().enumerate() {
                    for (f, value) in row.iter_mut().enumerate() {
                        *value = ((step.wrapping_mul(31) ^ (i * HOST_FIELDS + f) as u64) % 97) as f64 * 0.01;
                    }
                    black_box(scorer.score(&row));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, detector, host_scorer);
criterion_main!(benches);
