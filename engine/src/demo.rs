//! `augur demo`: the one-command tour. Starts the engine on defaults in a fresh data dir, drives a
//! synthetic fleet through real HTTP with a progress bar, shows how a bad line is reported, then
//! prints what was ingested per region and per partition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::loadgen::{self, Live, LoadgenOptions};
use crate::server::Server;

/// Runs the demo for `duration` of load.
///
/// # Errors
/// When the engine cannot start or the load cannot reach it.
pub async fn run(duration: Duration) -> anyhow::Result<()> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut config = Config::default();
    config.server.data_dir = std::env::temp_dir().join(format!("augur-demo-{stamp}-{}", std::process::id()));
    config.http.addr = ([127, 0, 0, 1], 0).into();
    config.tcp.addr = ([127, 0, 0, 1], 0).into();
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;

    let server = Server::start(&config).await?;
    println!("Augur demo");
    println!(
        "  engine:    {} partitions, data dir {}",
        config.router.resolved_partitions(),
        config.server.data_dir.display()
    );
    println!(
        "  listening: http://{} (InfluxDB v1 /write, v2 /api/v2/write), tcp {}",
        server.http_addr(),
        server.tcp_addr()
    );
    println!();

    let options = LoadgenOptions {
        url: format!("http://{}", server.http_addr()),
        hosts: 2000,
        regions: 4,
        connections: 4,
        duration,
        ..LoadgenOptions::default()
    };
    println!(
        "Driving a fleet of {} hosts in {} regions ({} fields per point) for {:?} ...",
        options.hosts, options.regions, options.fields, duration
    );
    let live = Arc::new(Live::default());
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("  [{bar:40}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let ticker = tokio::spawn({
        let (bar, live) = (bar.clone(), live.clone());
        async move {
            let started = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let points = live.points.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                bar.set_position(started.elapsed().as_millis() as u64);
                bar.set_message(format!("{points} points acknowledged, {:.0} points/s", points as f64 / secs));
            }
        }
    });
    let report = loadgen::run(&options, live).await;
    ticker.abort();
    bar.finish_and_clear();
    let report = report?;
    report.print(false);
    println!();

    println!("Strict by design: a body with one bad line keeps the good line and names the bad one:");
    let body = "cpu,host=demo,region=eu-west-1 usage_user=12.5\ncpu,host=demo,region=eu-west-1 usage_user=12.5.1\n";
    println!("  POST /api/v2/write\n    {}", body.trim_end().replace('\n', "\n    "));
    let (status, reply) = post(server.http_addr(), "/api/v2/write", body).await?;
    let reply = serde_json::from_str::<serde_json::Value>(&reply)
        .and_then(|json| serde_json::to_string_pretty(&json))
        .unwrap_or(reply);
    println!("  -> {status}\n    {}", reply.replace('\n', "\n    "));
    println!();

    let summary = server.shutdown().await?;
    let mut regions: BTreeMap<&str, u64> = BTreeMap::new();
    for partition in &summary.partitions {
        for (region, points) in &partition.by_region {
            *regions.entry(region).or_default() += points;
        }
    }
    println!("Ingested per region:");
    println!("  {:<16} {:>12}", "region", "points");
    for (region, points) in &regions {
        println!("  {region:<16} {points:>12}");
    }
    println!();
    println!("Ingested per partition:");
    println!(
        "  {:<10} {:>12} {:>14} {:>9} {:>10} {:>8}",
        "partition", "points", "field values", "batches", "rejected", "regions"
    );
    for (i, (done, routed)) in summary.partitions.iter().zip(&summary.router).enumerate() {
        println!(
            "  {i:<10} {:>12} {:>14} {:>9} {:>10} {:>8}",
            done.points,
            done.values,
            routed.batches_in,
            routed.batches_rejected,
            done.by_region.len()
        );
    }
    println!();
    println!("Next: `augur serve` and point Telegraf or `augur loadgen` at http://127.0.0.1:8086.");
    Ok(())
}

/// One plain HTTP/1.1 POST; returns the status and the body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> anyhow::Result<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or("").trim_start_matches("HTTP/1.1 ").to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}
