//! Window update throughput: points into the open windows of one partition with 100k active
//! series × 10 fields, at the default resolutions (10s, 1m, 1h); and the quantiles a rollup row
//! takes of each closed window's sketch.
//!
//! `cargo bench -p augur-suite --bench windows`; throughput in field values.

use std::hint::black_box;
use std::time::Duration;

use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::window::{Resolution, Windows};
use augur_ingest::PointBatch;
use augur_storage::sketch::DdSketch;
use augur_suite::Batcher;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const HOSTS: usize = 100_000;
const BATCH: usize = 5000;

/// Batches covering every host once, all in one 10 s window, through the real parser and router.
fn batches(time: i64) -> Vec<PointBatch> {
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(HOSTS, 4, 10, 0));
    let mut body = Vec::new();
    (0..HOSTS / BATCH)
        .map(|_| {
            fleet.batch(BATCH, time, &mut body);
            batcher.batch(&body)
        })
        .collect()
}

fn window_update(c: &mut Criterion) {
    let resolutions = [10, 60, 3600].map(|s| Resolution::new(Duration::from_secs(s))).to_vec();
    let mut windows = Windows::new(resolutions);
    let warm = batches(1_700_000_000_000_000_000);
    for batch in &warm {
        batch.iter().for_each(|p| windows.add(&p));
    }
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(warm[0].value_count() as u64));
    // Each iteration updates the next 5000 series, cycling through all 100k, so the state is
    // touched the way a real stream touches it (not kept hot in cache).
    let mut next = 0;
    group.bench_function("add_5000_points_100k_series_x10_fields", |b| {
        b.iter(|| {
            warm[next].iter().for_each(|p| windows.add(black_box(&p)));
            next = (next + 1) % warm.len();
        })
    });
    group.finish();
    assert_eq!(windows.active_series(), HOSTS);
}

fn raw_output(c: &mut Criterion) {
    let batches = batches(1_700_000_000_000_000_000);
    let mut group = c.benchmark_group("raw");
    group.throughput(Throughput::Elements(batches[0].value_count() as u64));
    group.bench_function("arrow_5000_points_x10_fields", |b| {
        b.iter(|| augur_engine::raw::raw_batches(black_box(&batches[..1])).unwrap())
    });
    group.finish();
}

/// A rollup row's four quantiles, for sketches of 1 to 600 values (a 10 s window of a series
/// sent once, up to an hour's window of one sent every 6 s): one pass against one per quantile.
fn rollup_quantiles(c: &mut Criterion) {
    const QUANTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];
    let sketches: Vec<DdSketch> = (0..1000u32)
        .map(|i| {
            let mut sketch = DdSketch::new();
            (0..1 + i % 600).for_each(|j| sketch.add(f64::from(i % 97) + f64::from(j % 50) * 0.37));
            sketch
        })
        .collect();
    let mut group = c.benchmark_group("rollup_quantiles");
    group.throughput(Throughput::Elements(sketches.len() as u64));
    group.bench_function("one_pass_1000_sketches", |b| {
        b.iter(|| {
            sketches.iter().for_each(|s| {
                black_box(s.quantiles(QUANTILES));
            })
        })
    });
    group.bench_function("pass_per_quantile_1000_sketches", |b| {
        b.iter(|| {
            sketches.iter().for_each(|s| {
                black_box(QUANTILES.map(|q| s.quantile(q)));
            })
        })
    });
    group.finish();
}

criterion_group!(benches, window_update, raw_output, rollup_quantiles);
criterion_main!(benches);
