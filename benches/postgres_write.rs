//! Rollup rows written to one PostgreSQL shard per second: Augur's write (binary `COPY` into a
//! staging table, then a set-based upsert) against the baseline of binary `COPY` straight into
//! the same table, side by side on a throwaway server this benchmark starts.
//!
//! `cargo bench -p augur-suite --bench postgres_write`; throughput in rollup rows.

use std::collections::HashSet;
use std::time::Duration;

use arrow_array::RecordBatch;
use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::rollup::RollupBuilder;
use augur_engine::window::{Resolution, Windows};
use augur_storage::postgres::{copy, migrations};
use augur_suite::{postgres_shards, Batcher};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const HOSTS: usize = 10_000;
const TIME: i64 = 1_795_000_000_000_000_000;

/// 10 s rollups of `HOSTS` hosts × 10 fields: 100k rows, as the pipelines emit them.
fn rollups() -> RecordBatch {
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(HOSTS, 4, 10, 0));
    let mut windows = Windows::new(vec![Resolution::new(Duration::from_secs(10))]);
    let mut body = Vec::new();
    for second in 0..10 {
        for _ in 0..HOSTS / 5000 {
            fleet.batch(5000, TIME + second * 1_000_000_000, &mut body);
            batcher.batch(&body).iter().for_each(|p| windows.add(&p));
        }
    }
    let mut out = RollupBuilder::default();
    windows.close(i64::MAX, true, &mut out);
    out.finish().expect("a rollup batch")
}

fn write(c: &mut Criterion) {
    let shards = postgres_shards("bench", 1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let batch = rollups();
    let client = runtime.block_on(async {
        let (mut client, connection) =
            tokio_postgres::connect(&shards[0].url("augur"), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        migrations::migrate(&mut client).await.expect("migrate");
        migrations::create_day_partition(&client, migrations::day_start(TIME)).await.expect("partition");
        copy::prepare(&client).await.expect("staging");
        std::cell::RefCell::new(client)
    });
    let mut known = HashSet::new();
    let mut group = c.benchmark_group("postgres");
    group.sample_size(10).throughput(Throughput::Elements(batch.num_rows() as u64));
    // Each sample starts from an empty table, so both measure inserting 100k new rows.
    let empty = || runtime.block_on(client.borrow().batch_execute("TRUNCATE rollups")).expect("truncate");
    group.bench_function("copy_into_rollups_100k_rows", |b| {
        b.iter_batched(
            empty,
            |()| runtime.block_on(copy::copy_without_upsert(&mut client.borrow_mut(), &batch)).expect("copy"),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("augur_upsert_100k_rows", |b| {
        b.iter_batched(
            empty,
            |()| runtime.block_on(copy::write(&mut client.borrow_mut(), &batch, &mut known)).expect("upsert"),
            BatchSize::PerIteration,
        )
    });
    // Replaying rows already there (after a crash): the conflict path of the upsert.
    group.bench_function("augur_upsert_100k_rows_again", |b| {
        b.iter(|| runtime.block_on(copy::write(&mut client.borrow_mut(), &batch, &mut known)).expect("upsert"))
    });
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
