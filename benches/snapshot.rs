//! Snapshot encode and decode of one partition's open windows: 100k series × 10 fields at the
//! default resolutions (10s, 1m, 1h), one point per series, as the checkpoint of issue 6 would
//! take them. Prints the snapshot size per (series, field).
//!
//! `cargo bench -p augur-suite --bench snapshot`; throughput in (series, field) states.

use std::hint::black_box;
use std::time::Duration;

use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::snapshot;
use augur_engine::watermark::Watermark;
use augur_engine::window::{Resolution, Windows};
use augur_suite::Batcher;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const HOSTS: usize = 100_000;
const FIELDS: usize = 10;

fn state() -> (Windows, Watermark) {
    let resolutions = [10, 60, 3600].map(|s| Resolution::new(Duration::from_secs(s))).to_vec();
    let mut windows = Windows::new(resolutions);
    let mut watermark = Watermark::new(10_000_000_000, 30_000_000_000);
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(HOSTS, 4, FIELDS, 0));
    let mut body = Vec::new();
    for _ in 0..HOSTS / 5000 {
        fleet.batch(5000, 1_700_000_000_000_000_000, &mut body);
        for point in batcher.batch(&body).iter() {
            watermark.observe(point.time());
            windows.add(&point);
        }
    }
    (windows, watermark)
}

fn snapshots(c: &mut Criterion) {
    let (windows, watermark) = state();
    let bytes = snapshot::encode(&windows, &watermark);
    let states = (HOSTS * FIELDS) as u64;
    println!("snapshot: {} bytes, {:.0} bytes per (series, field)", bytes.len(), bytes.len() as f64 / states as f64);
    let resolutions = windows.resolutions().to_vec();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10).throughput(Throughput::Elements(states));
    group.bench_function("encode_100k_series_x10_fields", |b| {
        b.iter(|| snapshot::encode(black_box(&windows), &watermark))
    });
    group.bench_function("decode_100k_series_x10_fields", |b| {
        b.iter(|| snapshot::decode(black_box(&bytes), resolutions.clone(), (10_000_000_000, 30_000_000_000)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
