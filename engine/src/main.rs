//! The `augur` binary: `serve`, `demo`, `loadgen`, `partitions`, `tune`, `compact`, `check-config`,
//! `eval`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use augur_engine::checkpoint::Checkpoint;
use augur_engine::config::Config;
use augur_engine::loadgen::{self, LoadgenOptions};
use augur_engine::lock::DataDirLock;
use augur_engine::recovery::Recovered;
use augur_engine::stores::Stores;
use augur_engine::{demo, server::Server};
use augur_storage::parquet::compact::compact_tree;
use augur_storage::parquet::file::Encoder;
use augur_storage::parquet::sink::COMPACTION_GRACE;
use clap::{Parser, Subcommand};
use tracing::info;

// mimalloc: measurably faster than the system allocator for the many short-lived batch buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Augur: a sharded telemetry stream-processing engine.
#[derive(Debug, Parser)]
#[command(name = "augur", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines look on stderr: `pretty` for people, `json` (one object per line) for log
    /// collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine.
    Serve(ServeArgs),
    /// Start the engine, drive a synthetic fleet through it, and show what happened.
    Demo {
        /// How long to drive load.
        #[arg(long, default_value = "5s", value_parser = humantime_serde::re::humantime::parse_duration)]
        duration: Duration,
    },
    /// Drive TSBS-shaped load at a server and report throughput and latency.
    Loadgen(LoadgenOptions),
    /// Show a running server's partitions: load, queues, active series, late points and skew.
    Partitions {
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:8086")]
        url: String,
        /// A token with the `admin` scope (or set AUGUR_TOKEN).
        #[arg(long, env = "AUGUR_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Measure this machine: run the server at several partition counts under `loadgen` and
    /// recommend one.
    Tune(augur_engine::tune::TuneOptions),
    /// Merge the small Parquet files of each partition folder (run while no server uses the dir).
    Compact(CompactArgs),
    /// Check a config file (with environment overrides) and print the result.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Evaluate the anomaly detector on a benchmark.
    #[command(subcommand)]
    Eval(Eval),
}

#[derive(Debug, Subcommand)]
enum Eval {
    /// The Numenta Anomaly Benchmark: score every `<category>/<file>.csv` (`timestamp,value`
    /// rows) under `--data` with the detector the pipelines run, write NAB-layout results
    /// (`<out>/augur/<category>/augur_<file>.csv`), and with `--labels` (NAB's
    /// `combined_windows.json`) print the standard, reward_low_FP_rate and reward_low_FN_rate
    /// scores, leaving one category out (each scored at the threshold chosen on the others), then
    /// of every file at once. With `--nested`, then the nested cross-validation of the
    /// detector's tuned constants (each category scored with the constants and threshold chosen
    /// on the others).
    Nab(NabArgs),
    /// One anomaly score per host from all its fields: feed every `<host>.csv` (or `.csv.gz`)
    /// under `--data` (`timestamp,<field>,...`, one row per time step, history first) through the
    /// per-host scorer, write `<out>/<host>.csv` (`timestamp,anomaly_score`), and with `--labels`
    /// (a folder of `<host>.txt`: one 0/1 per row of the labelled tail) print the fleet's
    /// point-wise scores (best F1, AUPRC, pooled, at 0.5, leaving one host out).
    Multivariate(EvalArgs),
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// The benchmark's data.
    #[arg(long)]
    data: PathBuf,
    /// Where the results go.
    #[arg(long)]
    out: PathBuf,
    /// The benchmark's labels, to score the results.
    #[arg(long)]
    labels: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct NabArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// Also choose the detector's constants inside each fold (needs `--labels`; about 5 s).
    #[arg(long)]
    nested: bool,
}

#[derive(Debug, clap::Args)]
struct CompactArgs {
    /// Config file (TOML), for `[server] data-dir` and `[parquet]`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (`[server] data-dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Compact a folder only when it holds at least this many files.
    #[arg(long, default_value_t = 2)]
    min_files: usize,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Config file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (`[server] data-dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (`[http] addr`).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// TCP listen address (`[tcp] addr`).
    #[arg(long)]
    tcp_addr: Option<SocketAddr>,
    /// Graphite plaintext listen address (`[graphite] addr`; none: no listener).
    #[arg(long)]
    graphite_addr: Option<SocketAddr>,
    /// StatsD listen address, UDP (`[statsd] addr`; none: no listener).
    #[arg(long)]
    statsd_addr: Option<SocketAddr>,
    /// Number of partitions (`[router] partitions`; 0 = one per core).
    #[arg(long)]
    partitions: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, cli.log_format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("augur: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, format: LogFormat) -> anyhow::Result<()> {
    let init_logging = |default: &str| init_logging(default, format);
    match command {
        Command::Serve(args) => {
            init_logging("info");
            let config = load_config(&args)?;
            runtime()?.block_on(serve(config))
        }
        Command::Demo { duration } => {
            init_logging("warn");
            runtime()?.block_on(demo::run(duration))
        }
        Command::Loadgen(options) => {
            init_logging("warn");
            runtime()?.block_on(async {
                let report = loadgen::run(&options, Arc::default()).await?;
                report.print(options.json);
                Ok(())
            })
        }
        Command::Partitions { url, token } => {
            init_logging("warn");
            let table = runtime()?.block_on(augur_engine::ops::client::run(&url, token.as_deref()))?;
            print!("{table}");
            Ok(())
        }
        Command::Tune(options) => {
            init_logging("warn");
            let tuning = runtime()?.block_on(augur_engine::tune::run(&options))?;
            tuning.print(options.json);
            Ok(())
        }
        Command::Compact(args) => {
            init_logging("info");
            compact(&args)
        }
        Command::Eval(Eval::Nab(NabArgs { eval: args, nested })) => {
            if nested && args.labels.is_none() {
                anyhow::bail!("--nested scores the folds: it needs --labels");
            }
            augur_engine::predict::eval::run(&args.data, &args.out, args.labels.as_deref(), nested)?;
            Ok(())
        }
        Command::Eval(Eval::Multivariate(args)) => {
            augur_engine::predict::multivariate::run(&args.data, &args.out, args.labels.as_deref())?;
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::load(Some(&file), std::env::vars())?;
            config.validate()?;
            println!("{} is valid. Effective configuration:\n", file.display());
            print!("{}", toml::to_string(&config).context("rendering the configuration")?);
            Ok(())
        }
    }
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &args.data_dir {
        config.server.data_dir.clone_from(dir);
    }
    if let Some(addr) = args.http_addr {
        config.http.addr = addr;
    }
    if let Some(addr) = args.tcp_addr {
        config.tcp.addr = addr;
    }
    if let Some(addr) = args.graphite_addr {
        config.graphite.addr = Some(addr);
    }
    if let Some(addr) = args.statsd_addr {
        config.statsd.addr = Some(addr);
    }
    if let Some(partitions) = args.partitions {
        config.router.partitions = partitions;
    }
    config.validate()?;
    Ok(config)
}

fn compact(args: &CompactArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = &args.data_dir {
        config.server.data_dir.clone_from(dir);
    }
    // Compaction serves no one: the tokens a server needs are not this command's business.
    config.auth.enabled = false;
    config.validate()?;
    let _lock = DataDirLock::acquire(&config.server.data_dir)?;
    let encoder =
        Encoder::new(config.parquet.zstd_level, config.parquet.row_group_rows, config.parquet.row_group_bytes)?;
    let staging = config.server.data_dir.join("parquet-staging");
    // Files after the last checkpoint may be deleted and written again by the next start's replay.
    let committed = Checkpoint::read(&config.server.state_dir())?.map_or(0, |c| c.epoch);
    let done =
        compact_tree(&config.server.parquet_dir(), &staging, &encoder, args.min_files, COMPACTION_GRACE, committed)?;
    println!(
        "compacted {} folder(s): {} file(s) into {}; old files are deleted from {} after {} minutes",
        done.folders,
        done.files_before,
        done.files_after,
        staging.display(),
        COMPACTION_GRACE.as_secs() / 60
    );
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    let _lock = DataDirLock::acquire(&config.server.data_dir)?;
    let recovered = Recovered::open(&config)?;
    let stores = Stores::open(&config, &tokio::runtime::Handle::current(), Vec::new(), recovered.committed())?;
    // Before anyone learns the address: a SIGTERM sent right after it must find the handler.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let server = Server::start(&config, stores.sink, stores.hot, recovered).await?;
    // Tests and scripts read the bound addresses (port 0 picks free ones) from this line.
    let graphite = server.graphite_addr().map(|a| format!(" graphite={a}")).unwrap_or_default();
    let statsd = server.statsd_addr().map(|a| format!(" statsd={a}")).unwrap_or_default();
    println!("augur listening http={} tcp={}{graphite}{statsd}", server.http_addr(), server.tcp_addr());
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    info!("Stop signal received; draining.");
    server.shutdown().await?;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("augur-io")
        .build()
        .context("starting the async runtime")
}

fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// Raises this process's open-file limit to its hard limit: every client connection is a file
/// descriptor, and the usual soft limit of 1024 would refuse connections long before
/// `http.max-connections`.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
