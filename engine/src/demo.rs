//! `augur demo`: the one-command tour. Starts the engine on defaults in a fresh data dir, drives a
//! synthetic fleet through real HTTP with a progress bar, shows how a bad line is reported, then
//! prints what was ingested per region and per partition.

mod failures;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arrow_array::{Array, BinaryArray, BooleanArray, Float64Array, RecordBatch, TimestampNanosecondArray, UInt64Array};
use augur_storage::parquet::ParquetSink;
use augur_storage::postgres::ShardConfig;
use augur_storage::schema::Text;
use augur_storage::sink::MemorySink;
use augur_storage::sketch::DdSketch;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::loadgen::{self, Live, LoadgenOptions};
use crate::local_postgres::LocalPostgres;
use crate::recovery::Recovered;
use crate::server::Server;
use crate::stores::Stores;

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
    // Loopback only, and the demo's own load generator is the only client.
    config.auth.enabled = false;
    // A tour of seconds: 10 s windows (off by default, docs/rollups.md) close while it runs.
    config.engine.resolutions = [10, 60, 3600].map(|s| Duration::from_secs(s).into()).to_vec();
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;

    // Two local PostgreSQL shards when the server binaries are here; dropped (stopped) on return.
    let shards = start_shards(&config.server.data_dir.join("postgres"));
    if let Ok(shards) = &shards {
        config.postgres.shards = shards
            .iter()
            .enumerate()
            .map(|(i, server)| ShardConfig { name: format!("shard-{i}"), url: server.url("augur") })
            .collect();
    }
    let sink = Arc::new(MemorySink::default());
    let recovered = Recovered::open(&config)?;
    let stores = Stores::open(&config, &tokio::runtime::Handle::current(), vec![sink.clone()], recovered.committed())?;
    let parquet = stores.parquet.clone().context("the demo writes Parquet")?;
    let server = Server::start(&config, stores.sink.clone(), stores.hot.clone(), recovered).await?;
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
    match &shards {
        Ok(servers) => println!(
            "  hot tier:  {} PostgreSQL shards on 127.0.0.1 ports {}",
            servers.len(),
            servers.iter().map(|s| s.port().to_string()).collect::<Vec<_>>().join(", ")
        ),
        Err(why) => println!("  hot tier:  none, running without PostgreSQL: {why}"),
    }
    println!();

    // Five hosts heading for a failure, sent first so their history is on time for the windows.
    let (history, failures) =
        failures::inject(augur_storage::now_nanos() / 60_000_000_000 * 60_000_000_000 - 60_000_000_000);
    println!("Injecting five failures into 12 hours of history of five more hosts (see the table at the end).");
    let (status, reply) = request(server.http_addr(), "POST", "/api/v2/write", &history).await?;
    anyhow::ensure!(status.starts_with("204"), "the injected history was refused: {status} {reply}");

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
    // Ctrl-C ends the load early; the engine still drains, flushes and reports below.
    let report = tokio::select! {
        report = loadgen::run(&options, live) => Some(report),
        _ = tokio::signal::ctrl_c() => None,
    };
    ticker.abort();
    bar.finish_and_clear();
    match report {
        Some(report) => report?.print(false),
        None => println!("Interrupted: stopping the load, draining and flushing the engine."),
    }
    println!();

    println!("Strict by design: a body with one bad line keeps the good line and names the bad one:");
    let body = "cpu,host=demo,region=eu-west-1 usage_user=12.5\ncpu,host=demo,region=eu-west-1 usage_user=12.5.1\n";
    println!("  POST /api/v2/write\n    {}", body.trim_end().replace('\n', "\n    "));
    let (status, reply) = request(server.http_addr(), "POST", "/api/v2/write", body).await?;
    let reply = serde_json::from_str::<serde_json::Value>(&reply)
        .and_then(|json| serde_json::to_string_pretty(&json))
        .unwrap_or(reply);
    println!("  -> {status}\n    {}", reply.replace('\n', "\n    "));
    println!();

    let summary = server.shutdown().await?;
    if let Some(hot) = stores.hot.clone() {
        // Every window is in PostgreSQL now that the engine drained; ask for some through the
        // query API (served alone now, as it is in `augur serve`).
        print_api_call(hot, &config).await?;
    }
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
    print_rollups(&sink)?;
    println!();
    print_parquet(&parquet)?;
    println!();
    if let Some(postgres) = &stores.postgres {
        println!("Rollup rows in the hot tier, per shard:");
        for (name, stats) in postgres.shard_stats() {
            println!("  {name:<10} {:>10} rows", stats.rows_written.load(Ordering::Relaxed));
        }
        println!();
    }
    failures::print_table(&failures, &sink.prediction_batches());
    println!();
    println!("Next: `augur serve` and point Telegraf or `augur loadgen` at http://127.0.0.1:8086.");
    Ok(())
}

/// Prints CPU per region for the latest minute: every host's 1-minute window merged per region,
/// quantiles from the merged sketches.
fn print_rollups(sink: &MemorySink) -> anyhow::Result<()> {
    let batches = sink.rollup_batches();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let windows_closed: usize = batches.iter().map(|b| b.num_rows() - count_true(b, "partial")).sum();
    println!("Rollups: {rows} rows ({windows_closed} closed by the watermark, the rest flushed at shutdown).");
    let mut per_region: BTreeMap<(String, i64), (u64, f64, f64, DdSketch)> = BTreeMap::new();
    for batch in &batches {
        let text = |name: &str| batch.column_by_name(name).and_then(Text::of);
        let (Some(region), Some(field), Some(resolution)) = (text("region"), text("field"), text("resolution")) else {
            anyhow::bail!("rollup batch without its text columns");
        };
        let start = batch
            .column_by_name("window_start")
            .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>().cloned());
        let number =
            |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
        let count = batch.column_by_name("count").and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned());
        let sketch = batch.column_by_name("sketch").and_then(|c| c.as_any().downcast_ref::<BinaryArray>().cloned());
        let (Some(start), Some(sum), Some(max), Some(count), Some(sketch)) =
            (start, number("sum"), number("max"), count, sketch)
        else {
            anyhow::bail!("rollup batch without its value columns");
        };
        for row in 0..batch.num_rows() {
            if resolution.value(row) != "1m" || field.value(row) != "usage_user" {
                continue;
            }
            let entry = per_region
                .entry((region.value(row).to_owned(), start.value(row)))
                .or_insert_with(|| (0, 0.0, f64::MIN, DdSketch::new()));
            entry.0 += count.value(row);
            entry.1 += sum.value(row);
            entry.2 = entry.2.max(max.value(row));
            entry.3.merge(&DdSketch::from_bytes(sketch.value(row))?);
        }
    }
    let Some(latest) = per_region.keys().map(|(_, start)| *start).max() else { return Ok(()) };
    println!("CPU usage_user per region, 1-minute window starting {} (UTC):", format_time(latest));
    println!("  {:<16} {:>10} {:>8} {:>8} {:>8} {:>8}", "region", "values", "mean", "p50", "p99", "max");
    for ((region, start), (count, sum, max, sketch)) in &per_region {
        if *start != latest {
            continue;
        }
        let q = |q: f64| sketch.quantile(q).unwrap_or(f64::NAN);
        println!("  {region:<16} {count:>10} {:>8.2} {:>8.2} {:>8.2} {max:>8.2}", sum / *count as f64, q(0.5), q(0.99));
    }
    Ok(())
}

/// Prints the Parquet tree (folders with their file counts and sizes) and a DuckDB query over it.
fn print_parquet(parquet: &ParquetSink) -> anyhow::Result<()> {
    let stats = parquet.stats();
    let root = parquet.root();
    println!(
        "Parquet: {} files, {:.1} MiB, {} rows under {}",
        stats.files.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
        stats.rows.load(Ordering::Relaxed),
        root.display()
    );
    let mut folders: BTreeMap<std::path::PathBuf, (usize, u64)> = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                let folder = folders.entry(dir.strip_prefix(root)?.to_owned()).or_default();
                folder.0 += 1;
                folder.1 += entry.metadata()?.len();
            }
        }
    }
    for (i, (folder, (files, bytes))) in folders.iter().enumerate() {
        if i == 12 {
            println!("  ... and {} more folders", folders.len() - 12);
            break;
        }
        println!("  {:<72} {files:>3} file(s) {:>9.1} KiB", folder.display(), *bytes as f64 / 1024.0);
    }
    println!();
    println!("Query it with DuckDB (pip install duckdb; or the duckdb CLI):");
    println!(
        "  SELECT region, hostname, date_trunc('minute', time) AS minute, max(usage_user) AS max_user\n  \
         FROM read_parquet('{}/raw/cpu/*/*/*/*.parquet', hive_partitioning = true, union_by_name = true)\n  \
         GROUP BY ALL ORDER BY max_user DESC LIMIT 5;",
        root.display()
    );
    Ok(())
}

fn count_true(batch: &RecordBatch, column: &str) -> usize {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().map(|b| b.true_count()))
        .unwrap_or(0)
}

/// `HH:MM:SS` of a ns timestamp.
fn format_time(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// One plain HTTP/1.1 POST; returns the status and the body.
async fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.lines().next().unwrap_or("").trim_start_matches("HTTP/1.1 ").to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

/// Starts two PostgreSQL servers under `folder`, each with a database `augur`.
fn start_shards(folder: &std::path::Path) -> Result<Vec<LocalPostgres>, String> {
    (0..2)
        .map(|i| {
            let server = LocalPostgres::start(&folder.join(format!("shard-{i}")))?;
            server.create_database("augur")?;
            Ok(server)
        })
        .collect()
}

/// Asks the query API for one host's 10-second CPU rollups and prints the call and the answer.
async fn print_api_call(hot: augur_storage::postgres::HotQuery, config: &Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let routes = crate::api::routes(Some(hot), config.pipeline().resolutions);
    let api = tokio::spawn(async move { axum::serve(listener, routes).await });
    let path =
        "/api/v1/rollups?measurement=cpu&tag.hostname=host_0&field=usage_user&resolution=10s&start=now-5m&format=csv";
    let (status, body) = request(addr, "GET", path, "").await?;
    println!("The hot tier, through the query API (rows from both shards, merged):");
    println!("  curl 'http://{addr}{path}'");
    println!("  -> {status}");
    for line in body.lines().take(8) {
        println!("    {line}");
    }
    println!();
    api.abort();
    Ok(())
}
