//! Parquet encode throughput per core: a loadgen-shaped raw batch (5000 points × 10 tags ×
//! 10 fields) sorted and encoded by the sink's encoder.
//!
//! `cargo bench -p augur-suite --bench parquet_write`; throughput in rows.

use std::hint::black_box;

use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::raw::raw_batches;
use augur_storage::parquet::file::{Encoder, SortOrder};
use augur_suite::Batcher;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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
    group.finish();
}

criterion_group!(benches, parquet_write);
criterion_main!(benches);
