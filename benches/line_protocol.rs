//! Parser and parse+route throughput on TSBS cpu-only shaped line protocol.
//!
//! `cargo bench -p augur-suite --bench line_protocol`; each benchmark reports bytes (MB/s) and,
//! under a `/values` name, field values per second.

use std::hint::black_box;
use std::sync::Arc;

use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_ingest::config::ModelConfig;
use augur_ingest::line_protocol::Parser;
use augur_ingest::write::LinePolicy;
use augur_ingest::{Precision, Router, Writer};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

/// One loadgen request: 5000 lines from 1000 hosts in 4 regions, 10 tags and 10 float fields each.
fn tsbs_body() -> (Vec<u8>, u64) {
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(1000, 4, 10, 0));
    let mut body = Vec::new();
    fleet.batch(5000, 1_700_000_000_000_000_000, &mut body);
    (body, 5000 * fleet.fields() as u64)
}

/// Runs `work` twice: once reporting bytes per second, once field values per second.
fn bytes_and_values(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    body: &[u8],
    values: u64,
    mut work: impl FnMut(&[u8]),
) {
    for (name, throughput) in
        [("bytes", Throughput::Bytes(body.len() as u64)), ("values", Throughput::Elements(values))]
    {
        group.throughput(throughput);
        group.bench_function(format!("tsbs_5000_lines/{name}"), |b| b.iter(|| work(black_box(body))));
    }
}

fn parse(c: &mut Criterion) {
    let (body, values) = tsbs_body();
    let mut group = c.benchmark_group("parse");
    bytes_and_values(&mut group, &body, values, |body| {
        let mut parser = Parser::new(body, Precision::Nanoseconds, 0, 1);
        let mut fields = 0;
        while let Some(line) = parser.next() {
            fields += line.map_or(0, |l| l.fields().len());
        }
        black_box(fields);
    });
    group.finish();
}

fn parse_and_route(c: &mut Criterion) {
    let (body, values) = tsbs_body();
    let (router, receivers) = Router::new(2, usize::MAX);
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
    let writer = Writer::new(Arc::new(router), &ModelConfig::default(), pool);
    let mut group = c.benchmark_group("parse_and_route");
    bytes_and_values(&mut group, &body, values, |body| {
        let mut parsed = writer.parse(body, Precision::Nanoseconds, 0, (1, usize::MAX), LinePolicy::All);
        writer.admit(&mut parsed).unwrap();
        for receiver in &receivers {
            while receiver.try_recv().is_some() {}
        }
    });
    group.finish();
}

criterion_group!(benches, parse, parse_and_route);
criterion_main!(benches);
