//! Write-ahead log group commit: 64 KiB records (about one compressed 5000-line request) appended
//! by 8 concurrent writers, `durability = "fsync"` against `"none"`, with a 5 ms and a 0 ms
//! `flush_interval`, side by side on the machine's disk (the system temp dir). Throughput in
//! records; the printed waits are what a request would wait for its acknowledgement.
//!
//! `cargo bench -p augur-suite --bench wal`

use std::sync::Arc;
use std::time::{Duration, Instant};

use augur_ingest::wal::group::GroupCommit;
use augur_ingest::wal::{Durability, Wal, WalOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WRITERS: usize = 8;
const PER_WRITER: usize = 32;
const RECORD: usize = 64 << 10;

fn run(group: &Arc<GroupCommit>, runtime: &tokio::runtime::Runtime) -> Vec<Duration> {
    runtime.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|_| {
                let group = group.clone();
                tokio::spawn(async move {
                    let mut waits = Vec::with_capacity(PER_WRITER);
                    for _ in 0..PER_WRITER {
                        let began = Instant::now();
                        group.append(1, vec![7; RECORD]).await.expect("append");
                        waits.push(began.elapsed());
                    }
                    waits
                })
            })
            .collect();
        let mut waits = Vec::new();
        for task in tasks {
            waits.extend(task.await.expect("writer"));
        }
        waits
    })
}

fn group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut bench = c.benchmark_group("wal");
    bench.sample_size(10).throughput(Throughput::Elements((WRITERS * PER_WRITER) as u64));
    let cases = [
        ("fsync_5ms", Durability::Fsync, Duration::from_millis(5)),
        ("none_5ms", Durability::None, Duration::from_millis(5)),
        ("fsync_0ms", Durability::Fsync, Duration::ZERO),
        ("none_0ms", Durability::None, Duration::ZERO),
    ];
    for (name, durability, flush_interval) in cases {
        let dir = std::env::temp_dir().join(format!("augur-wal-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = WalOptions { dir: dir.clone(), segment_bytes: 64 << 20, max_bytes: u64::MAX, durability };
        let (wal, _) = Wal::open(options).expect("open");
        let group = Arc::new(GroupCommit::start(wal, flush_interval).expect("start"));
        let mut waits = Vec::new();
        bench.bench_function(format!("{name}_8_writers_64KiB_records"), |b| {
            b.iter(|| {
                waits.extend(run(&group, &runtime));
                // Keep the log from growing without bound between samples.
                let last = group.stats().records.load(std::sync::atomic::Ordering::Relaxed);
                group.checkpoint(last).expect("checkpoint");
            })
        });
        waits.sort();
        let commits = group.stats().commits.load(std::sync::atomic::Ordering::Relaxed);
        let records = group.stats().records.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "{name}: append wait p50 {:.2} ms, p99 {:.2} ms; {:.1} records per commit",
            waits[waits.len() / 2].as_secs_f64() * 1e3,
            waits[waits.len() * 99 / 100].as_secs_f64() * 1e3,
            records as f64 / commits.max(1) as f64
        );
        drop(group);
        let _ = std::fs::remove_dir_all(&dir);
    }
    bench.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
