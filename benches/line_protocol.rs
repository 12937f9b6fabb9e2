//! Parser and parse+route throughput on TSBS cpu-only shaped line protocol.
//!
//! `cargo bench --bench line_protocol`; throughput is reported in bytes (MB/s) and in field values.

use std::hint::black_box;
use std::sync::Arc;

use augur_ingest::line_protocol::Parser;
use augur_ingest::{Precision, RegionRule, Router, Writer};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// 5000 TSBS-shaped lines (the size of one loadgen request): 10 tags, 10 float fields.
fn tsbs_body() -> (Vec<u8>, u64) {
    let mut body = String::new();
    let fields = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
    ];
    let regions = ["us-east-1", "us-west-1", "eu-west-1", "ap-southeast-1"];
    for i in 0..5000u64 {
        let region = regions[i as usize % regions.len()];
        body.push_str(&format!(
            "cpu,arch=x64,datacenter={region}a,hostname=host_{i},os=Ubuntu16.04LTS,rack={},region={region},service={},service_environment=production,service_version=0,team=SF",
            i % 100,
            i % 20
        ));
        for (f, name) in fields.iter().enumerate() {
            let sep = if f == 0 { ' ' } else { ',' };
            body.push_str(&format!("{sep}{name}={}.{}", (i * 7 + f as u64) % 100, i % 10));
        }
        body.push_str(&format!(" {}\n", 1_700_000_000_000_000_000u64 + i));
    }
    (body.into_bytes(), 5000 * 10)
}

fn parse(c: &mut Criterion) {
    let (body, values) = tsbs_body();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("tsbs_5000_lines/bytes", |b| {
        b.iter(|| {
            let mut parser = Parser::new(black_box(&body), Precision::Nanoseconds, 0, 1);
            let mut fields = 0;
            while let Some(line) = parser.next() {
                fields += line.map_or(0, |l| l.fields.len());
            }
            fields
        })
    });
    group.throughput(Throughput::Elements(values));
    group.bench_function("tsbs_5000_lines/values", |b| {
        b.iter(|| {
            let mut parser = Parser::new(black_box(&body), Precision::Nanoseconds, 0, 1);
            let mut fields = 0;
            while let Some(line) = parser.next() {
                fields += line.map_or(0, |l| l.fields.len());
            }
            fields
        })
    });
    group.finish();
}

fn parse_and_route(c: &mut Criterion) {
    let (body, values) = tsbs_body();
    let (router, receivers) = Router::new(2, usize::MAX);
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
    let regions = RegionRule { tag: "region".into(), default: "default".into() };
    let writer = Writer::new(Arc::new(router), regions, pool);
    let mut group = c.benchmark_group("parse_and_route");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("tsbs_5000_lines/bytes", |b| {
        b.iter(|| {
            let mut parsed = writer.parse(black_box(&body), Precision::Nanoseconds, 0, 1);
            writer.admit(&mut parsed).unwrap();
            for receiver in &receivers {
                while receiver.try_recv().is_some() {}
            }
        })
    });
    group.throughput(Throughput::Elements(values));
    group.bench_function("tsbs_5000_lines/values", |b| {
        b.iter(|| {
            let mut parsed = writer.parse(black_box(&body), Precision::Nanoseconds, 0, 1);
            writer.admit(&mut parsed).unwrap();
            for receiver in &receivers {
                while receiver.try_recv().is_some() {}
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse, parse_and_route);
criterion_main!(benches);
