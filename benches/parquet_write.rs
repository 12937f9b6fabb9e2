//! Parquet encode throughput per core: a loadgen-shaped raw batch (5000 points × 10 tags ×
//! 10 fields), and one round of a minute's close (16,384 series × 8 fields of rollup rows, as a
//! partition closes them under load), each sorted and encoded by the sink's encoder.
//!
//! `cargo bench -p augur-suite --bench parquet_write`; throughput in rows.

use std::hint::black_box;

use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::raw::raw_batches;
use augur_engine::rollup::RollupBuilder;
use augur_engine::window::{Resolution, Windows};
use augur_storage::parquet::file::{Encoder, SortOrder};
use augur_suite::Batcher;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn parquet_write(c: &mut Criterion) {
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(1000, 1, 10, 0));
    let mut points = Vec::new();
    let mut body = Vec::new();
    for step in 0..5 {
        fleet.batch(1000, 1_700_000_000_000_000_000 + step * 10_000_000_000, &mut body);
        points.push(batcher.batch(&body));
    }
    let batch = raw_batches(&points).unwrap().remove(0).1;
    let encoder = Encoder::new(3, 1 << 20, 128 << 20).unwrap();
    let mut group = c.benchmark_group("parquet");
    group.throughput(Throughput::Elements(batch.num_rows() as u64));
    group.bench_function("encode_5000_rows_10_tags_10_fields", |b| {
        b.iter(|| encoder.encode(black_box(std::slice::from_ref(&batch)), SortOrder::Raw).unwrap())
    });
    group.sample_size(10);
    let rollups = minute_rollups(16_384, 8);
    group.throughput(Throughput::Elements(rollups.num_rows() as u64));
    group.bench_function("encode_rollups_16384_series_x8_fields", |b| {
        b.iter(|| encoder.encode(black_box(std::slice::from_ref(&rollups)), SortOrder::Rollups).unwrap())
    });
    group.finish();
}

/// The 1-minute rollup rows of `hosts` loadgen hosts with `fields` fields, six points each.
fn minute_rollups(hosts: usize, fields: usize) -> arrow_array::RecordBatch {
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(hosts, 4, fields, 0));
    let mut windows = Windows::new(vec![Resolution::new(Duration::from_secs(60))]);
    let mut body = Vec::new();
    let start = 1_700_000_040_000_000_000;
    for step in 0..6 {
        fleet.batch(hosts, start + step * 10_000_000_000, &mut body);
        batcher.batch(&body).iter().for_each(|p| windows.add(&p));
    }
    let mut out = RollupBuilder::default();
    windows.close(start + 120_000_000_000, false, &mut out);
    out.finish().unwrap()
}

criterion_group!(benches, parquet_write);
criterion_main!(benches);
