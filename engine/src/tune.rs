//! `augur tune`: measures this machine instead of guessing. For each candidate partition count it
//! starts the real server (this binary's `serve`, a fresh data dir, the given config otherwise),
//! drives `augur loadgen` at it, stops it, and prints throughput, acknowledgement latency, CPU
//! and memory per count with a recommendation.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::loadgen::{self, LoadgenOptions};

/// Counts within this share of the best throughput count as equally fast: the smallest of them
/// is recommended (fewer partitions hold less memory and give bigger batches).
const GOOD_ENOUGH: f64 = 0.95;

/// Options of `augur tune`.
#[derive(Debug, Clone, clap::Args)]
pub struct TuneOptions {
    /// Partition counts to try, e.g. `1,2,4,8` (default: 1, 2, 4 and twice the cores).
    #[arg(long, value_delimiter = ',')]
    pub partitions: Vec<usize>,
    /// Load time per count.
    #[arg(long, default_value = "20s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub duration: Duration,
    /// The server's config file (its listeners, data dir and partitions are set by `tune`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Hosts of the synthetic fleet.
    #[arg(long, default_value_t = 100_000)]
    pub hosts: usize,
    /// Fields per point.
    #[arg(long, default_value_t = 8)]
    pub fields: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Concurrent load connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Print the results as one JSON object on the last line too.
    #[arg(long)]
    pub json: bool,
}

/// One partition count's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Partitions.
    pub partitions: usize,
    /// Acknowledged field values per second.
    pub values_per_s: f64,
    /// Acknowledged points per second.
    pub points_per_s: f64,
    /// Median acknowledgement latency.
    pub p50_ms: f64,
    /// 99th percentile acknowledgement latency.
    pub p99_ms: f64,
    /// Refused or failed requests.
    pub errors: u64,
    /// Server CPU over the run, in cores.
    pub server_cores: f64,
    /// Server peak resident memory.
    pub peak_rss_mib: f64,
}

/// What `augur tune` found.
#[derive(Debug, Clone, Serialize)]
pub struct Tuning {
    /// Per count, in the order tried.
    pub trials: Vec<Trial>,
    /// The count to set as `router.partitions`.
    pub recommended: usize,
}

/// Runs every trial.
///
/// # Errors
/// When a server cannot start or the load cannot reach it.
pub async fn run(options: &TuneOptions) -> anyhow::Result<Tuning> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = options.partitions.clone();
    if counts.is_empty() {
        counts = vec![1, 2, 4, 2 * cores];
    }
    counts.sort_unstable();
    counts.dedup();
    if counts.contains(&0) {
        bail!("--partitions: counts start at 1");
    }
    let scratch = std::env::temp_dir().join(format!("augur-tune-{}", std::process::id()));
    let mut trials = Vec::new();
    for &partitions in &counts {
        let data = scratch.join(partitions.to_string());
        let trial = trial(options, partitions, &data).await;
        let _ = std::fs::remove_dir_all(&scratch);
        let trial = trial?;
        eprintln!("tune: {partitions} partition(s): {:.0} values/s, p99 {:.1} ms", trial.values_per_s, trial.p99_ms);
        trials.push(trial);
    }
    let best = trials.iter().map(|t| t.values_per_s).fold(0.0, f64::max);
    let recommended = trials.iter().find(|t| t.values_per_s >= GOOD_ENOUGH * best).map_or(counts[0], |t| t.partitions);
    Ok(Tuning { trials, recommended })
}

/// Starts a server with `partitions`, loads it, stops it.
async fn trial(options: &TuneOptions, partitions: usize, data: &Path) -> anyhow::Result<Trial> {
    let server = Server::start(options.config.as_deref(), partitions, data)?;
    let load = LoadgenOptions {
        url: format!("http://{}", server.http),
        hosts: options.hosts,
        fields: options.fields,
        batch: options.batch,
        connections: options.connections,
        duration: options.duration,
        ..LoadgenOptions::default()
    };
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    let report = loadgen::run(&load, Arc::default()).await;
    let server_cores = (server.cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    let peak_rss_mib = server.peak_rss_mib();
    server.stop()?;
    let report = report?;
    Ok(Trial {
        partitions,
        values_per_s: report.values_per_s,
        points_per_s: report.points_per_s,
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
        errors: report.errors,
        server_cores,
        peak_rss_mib,
    })
}

/// A child `augur serve` on loopback port 0.
struct Server {
    child: Child,
    http: String,
}

impl Server {
    fn start(config: Option<&Path>, partitions: usize, data: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe().context("finding this binary")?);
        command.arg("serve");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        // Loopback and this run's load only: no tokens needed.
        let mut child = command
            .args(["--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--partitions"])
            .arg(partitions.to_string())
            .arg("--data-dir")
            .arg(data)
            .env("AUGUR_AUTH__ENABLED", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting augur serve")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the server's listening line")?;
        let Some(http) = line.split_whitespace().find_map(|w| w.strip_prefix("http=")) else {
            let _ = child.kill();
            bail!("augur serve did not start (with {partitions} partitions); run it by hand to see why");
        };
        Ok(Self { http: http.to_owned(), child })
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// User plus system CPU seconds so far (Linux; 0 elsewhere).
    fn cpu_seconds(&self) -> f64 {
        let stat = self.proc_file("stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = self.proc_file("status");
        let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next());
        kib.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    }

    /// SIGTERM, then waits: the server drains and exits 0.
    fn stop(mut self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid")?;
        // SAFETY: kill only sends a signal to the child this struct owns.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().context("waiting for the server")?;
        if !status.success() {
            bail!("the server exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

impl Tuning {
    /// The table, the recommendation, and the JSON line if asked.
    pub fn print(&self, json: bool) {
        println!(
            "{:>10} {:>14} {:>12} {:>9} {:>9} {:>8} {:>12} {:>13}",
            "partitions", "values/s", "points/s", "p50 ms", "p99 ms", "errors", "server cores", "peak RSS MiB"
        );
        for t in &self.trials {
            println!(
                "{:>10} {:>14.0} {:>12.0} {:>9.1} {:>9.1} {:>8} {:>12.2} {:>13.0}",
                t.partitions,
                t.values_per_s,
                t.points_per_s,
                t.p50_ms,
                t.p99_ms,
                t.errors,
                t.server_cores,
                t.peak_rss_mib
            );
        }
        println!(
            "recommended: router.partitions = {} (the fewest partitions within {:.0}% of the best throughput)",
            self.recommended,
            (1.0 - GOOD_ENOUGH) * 100.0
        );
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
        }
    }
}
