//! Helpers shared by the end-to-end tests in `tests/`: run the real `augur` binary and talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `augur` binary of this build (`target/<profile>/augur`), or `$AUGUR_BIN` (measurements by
/// hand run the tests against `target/release/augur`).
///
/// # Panics
/// When it has not been built; `scripts/test.sh` builds it first.
pub fn augur_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AUGUR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/augur
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("augur");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p augur-engine` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A throwaway directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory named after `label`.
    pub fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("augur-test-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl TempDir {
    /// Keeps the directory: it is not removed on drop any more.
    pub fn into_path(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `augur serve` on loopback port 0, killed on drop if still running.
#[derive(Debug)]
pub struct AugurServer {
    child: Child,
    /// The bound HTTP address.
    pub http: SocketAddr,
    /// The bound TCP address.
    pub tcp: SocketAddr,
    /// The bound Graphite address, when that listener is on.
    pub graphite: Option<SocketAddr>,
    /// The bound StatsD address (UDP), when that listener is on.
    pub statsd: Option<SocketAddr>,
    /// The data dir.
    pub data_dir: PathBuf,
    /// Removes the data dir on drop, unless the test keeps it for a restart.
    owned_dir: Option<TempDir>,
}

impl AugurServer {
    /// Starts `augur serve` with `extra` arguments in a new data dir and waits until it listens.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    /// As [`AugurServer::start`], with environment variables set for the server.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("serve");
        Self::spawn(dir.0.clone(), Some(dir), extra, env, Stdio::inherit())
    }

    /// As [`AugurServer::start_with_env`], its log (stderr) going to the file `log`.
    pub fn start_logging_to(extra: &[&str], env: &[(&str, &str)], log: &std::path::Path) -> Self {
        let dir = TempDir::new("serve");
        let file = std::fs::File::create(log).expect("create the log file");
        Self::spawn(dir.0.clone(), Some(dir), extra, env, Stdio::from(file))
    }

    /// Starts `augur serve` on an existing data dir (a restart), which the caller owns.
    pub fn start_in(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::spawn(data_dir.to_owned(), None, extra, &[], Stdio::inherit())
    }

    /// As [`AugurServer::start_in`], with extra environment variables.
    pub fn start_in_with_env(data_dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(data_dir.to_owned(), None, extra, env, Stdio::inherit())
    }

    fn spawn(
        data_dir: PathBuf,
        owned_dir: Option<TempDir>,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let mut child = Command::new(augur_binary())
            .args(["serve", "--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(extra)
            // Most tests are about data, not access: auth is off unless a test turns it on.
            .env("AUGUR_AUTH__ENABLED", "false")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn augur serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let addr = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in {line:?}"))
        };
        let (http, tcp) = (addr("http="), addr("tcp="));
        let graphite = line.contains("graphite=").then(|| addr("graphite="));
        let statsd = line.contains("statsd=").then(|| addr("statsd="));
        Self { child, http, tcp, graphite, statsd, data_dir, owned_dir }
    }

    /// As [`AugurServer::terminate`], but the data dir stays (the caller removes it).
    pub fn terminate_keeping_data(mut self, within: Duration) -> ExitStatus {
        if let Some(dir) = self.owned_dir.take() {
            dir.into_path();
        }
        self.terminate(within)
    }

    /// Kills the server with SIGKILL (a crash: no drain, no checkpoint) and waits for it; the data
    /// dir stays.
    pub fn kill(mut self) {
        if let Some(dir) = self.owned_dir.take() {
            dir.into_path();
        }
        self.child.kill().expect("SIGKILL augur");
        self.child.wait().expect("wait for augur");
    }

    /// Waits (bounded) for the server to exit by itself, e.g. at a fault it was told to inject;
    /// the data dir stays.
    pub fn wait_for_exit(mut self, within: Duration) -> ExitStatus {
        if let Some(dir) = self.owned_dir.take() {
            dir.into_path();
        }
        self.exit_status(within, "by itself")
    }

    /// Waits up to `within` for the exit status; panics saying `after` what it did not exit.
    fn exit_status(&mut self, within: Duration, after: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "augur did not exit {after} within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self, within: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        self.exit_status(within, "after SIGTERM")
    }
}

impl Drop for AugurServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_with(addr, method, path, &[], body)
}

/// As [`http`], with extra header lines (`("Authorization", "Token …")`).
pub fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    // Lossy: a protobuf answer is shown, not decoded.
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// The Python of the venv `scripts/test.sh` makes with the real client libraries (OpenTelemetry's
/// SDK, statsd), or `$AUGUR_TEST_PYTHON`.
///
/// # Panics
/// When there is none: the message says how to make it.
pub fn venv_python() -> PathBuf {
    let path = std::env::var_os("AUGUR_TEST_PYTHON")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which creates the venv and installs the Python clients the tests use",
        path.display()
    );
    path
}

/// A metric in a `/metrics` text: `name` summed over all its labels, or with labels
/// (`name{shard="shard-0"}`) that one sample. `None` when absent.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else { continue };
        let matches =
            key == name || (!name.contains('{') && key.strip_prefix(name).is_some_and(|r| r.starts_with('{')));
        if matches {
            let value = value.trim().parse::<f64>().ok()? as u64;
            found = Some(found.unwrap_or(0) + value);
        }
    }
    found
}

/// Line protocol turned into `PointBatch`es through the real parser and router, as the pipelines
/// receive them (one partition; any timestamp accepted, since benchmarks choose their own times).
#[derive(Debug)]
pub struct Batcher {
    writer: augur_ingest::Writer,
    receiver: augur_ingest::PartitionReceiver,
}

impl Default for Batcher {
    fn default() -> Self {
        let (router, mut receivers) = augur_ingest::Router::new(1, usize::MAX);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a one-thread pool");
        let model = augur_ingest::config::ModelConfig {
            max_future: Duration::from_secs(u32::MAX.into()),
            ..augur_ingest::config::ModelConfig::default()
        };
        let writer = augur_ingest::Writer::new(std::sync::Arc::new(router), &model, std::sync::Arc::new(pool));
        Self { writer, receiver: receivers.remove(0) }
    }
}

impl Batcher {
    /// The points of `body` (every line must be good) as one batch.
    ///
    /// # Panics
    /// On a bad line: benchmark input is generated, so that is a bug.
    pub fn batch(&self, body: &[u8]) -> augur_ingest::PointBatch {
        let mut parsed = self.writer.parse(
            body,
            augur_ingest::Precision::Nanoseconds,
            0,
            (1, usize::MAX),
            augur_ingest::write::LinePolicy::All,
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        self.writer.admit(&mut parsed).expect("an unbounded partition admits everything");
        self.receiver.try_recv().expect("the batch just admitted")
    }
}

/// `n` throwaway PostgreSQL servers, each with an empty database `augur`; stopped and removed on
/// drop.
///
/// # Panics
/// When PostgreSQL's server binaries are missing (the message says what to install).
pub fn postgres_shards(label: &str, n: usize) -> Vec<augur_engine::local_postgres::LocalPostgres> {
    (0..n)
        .map(|i| {
            let dir = TempDir::new(&format!("pg-{label}-{i}")).into_path();
            let _ = std::fs::remove_dir(&dir);
            let server = augur_engine::local_postgres::LocalPostgres::start(&dir).unwrap_or_else(|e| panic!("{e}"));
            server.create_database("augur").unwrap_or_else(|e| panic!("{e}"));
            server
        })
        .collect()
}

/// Writes an `augur.toml` in `dir` naming `shards` `shard-0`, `shard-1`, ..., plus `extra` TOML
/// lines for `[postgres]`; returns its path.
pub fn postgres_config(
    dir: &std::path::Path,
    shards: &[&augur_engine::local_postgres::LocalPostgres],
    extra: &str,
) -> PathBuf {
    // The PostgreSQL tests count windows at three resolutions, 10 s ones among them.
    let mut text = format!("[engine]\nresolutions = [\"10s\", \"1m\", \"1h\"]\n\n[postgres]\n{extra}\n");
    for (i, shard) in shards.iter().enumerate() {
        text.push_str(&format!("[[postgres.shards]]\nname = \"shard-{i}\"\nurl = \"{}\"\n", shard.url("augur")));
    }
    let path = dir.join("augur.toml");
    std::fs::write(&path, text).expect("write augur.toml");
    path
}

/// Every `*.parquet` file under `dir`, and every temporary file a write left (`.tmp-*`).
pub fn parquet_files(dir: &std::path::Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut done, mut temp) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.starts_with(".tmp-") {
                temp.push(path);
            } else if name.ends_with(".parquet") {
                done.push(path);
            }
        }
    }
    (done, temp)
}

/// The batches of a Parquet file.
pub fn read_parquet(path: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::build)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("decode {}: {e}", path.display()))
}

/// A column of `batch` as its Arrow array type.
pub fn column<'a, T: 'static>(batch: &'a arrow_array::RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

/// One `POST /write` on a fresh connection; `None` when the connection failed (the server died
/// or was killed meanwhile).
pub fn try_write(addr: SocketAddr, body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let head =
        format!("POST /write HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_owned()))
}

/// The raw points of measurement `measurement` under `data_dir` as `id -> (host, time)`, from
/// their integer field `id` and tag `host`.
///
/// # Panics
/// When an id is there twice: the write path must store every point once.
pub fn raw_points_by_id(
    data_dir: &std::path::Path,
    measurement: &str,
) -> std::collections::HashMap<i64, (String, i64)> {
    use arrow_array::{Int64Array, StringArray, TimestampNanosecondArray};
    let mut points = std::collections::HashMap::new();
    let folder = format!("/raw/{measurement}/");
    for path in parquet_files(data_dir).0.iter().filter(|p| p.to_string_lossy().contains(&folder)) {
        for batch in read_parquet(path) {
            let (ids, hosts, times) = (
                column::<Int64Array>(&batch, "id"),
                column::<StringArray>(&batch, "host"),
                column::<TimestampNanosecondArray>(&batch, "time"),
            );
            for row in 0..batch.num_rows() {
                let previous = points.insert(ids.value(row), (hosts.value(row).to_owned(), times.value(row)));
                assert!(previous.is_none(), "point {} is in raw Parquet twice ({})", ids.value(row), path.display());
            }
        }
    }
    points
}

/// A minute in nanoseconds.
pub const MINUTE: i64 = 60_000_000_000;

/// Line protocol: minutes `minutes` of a steady CPU series of host `web1` in region `eu`, one point
/// a minute from `start` (ns), with `height` added over the minutes of `spike`.
pub fn cpu_with_spike(
    start: i64,
    minutes: std::ops::Range<i64>,
    (spike, height): (std::ops::Range<i64>, f64),
) -> String {
    minutes
        .map(|m| {
            let base = 40.0 + ((m * 7919) % 11) as f64 * 0.3;
            let value = if spike.contains(&m) { base + height } else { base };
            format!("cpu,host=web1,region=eu usage={value} {}\n", start + m * MINUTE)
        })
        .collect()
}

/// Every raw row of `measurement` under `data_dir`, as JSON objects: `time` (ns), the tags, the
/// fields, and `region` from the Hive folder. Tags a row lacks are absent.
pub fn raw_rows(data_dir: &std::path::Path, measurement: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
    use arrow_array::Array;
    use serde_json::Value;
    let folder = format!("/raw/{}/", augur_storage::parquet::layout::escape(measurement));
    let mut rows = Vec::new();
    for path in parquet_files(data_dir).0.iter().filter(|p| p.to_string_lossy().contains(&folder)) {
        let region = path
            .components()
            .find_map(|c| c.as_os_str().to_str()?.strip_prefix("region="))
            .unwrap_or_else(|| panic!("no region folder in {}", path.display()))
            .to_owned();
        for batch in read_parquet(path) {
            for row in 0..batch.num_rows() {
                let mut out = serde_json::Map::new();
                out.insert("region".into(), region.clone().into());
                for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
                    if array.is_null(row) {
                        continue;
                    }
                    let value: Value = match field.data_type() {
                        arrow_schema::DataType::Utf8 => array.as_string::<i32>().value(row).into(),
                        arrow_schema::DataType::Float64 => array.as_primitive::<Float64Type>().value(row).into(),
                        arrow_schema::DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
                        arrow_schema::DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
                        arrow_schema::DataType::Boolean => array.as_boolean().value(row).into(),
                        arrow_schema::DataType::Timestamp(..) => {
                            array.as_primitive::<TimestampNanosecondType>().value(row).into()
                        }
                        other => panic!("raw column {} has an unexpected type {other}", field.name()),
                    };
                    out.insert(field.name().clone(), value);
                }
                rows.push(out);
            }
        }
    }
    rows
}
