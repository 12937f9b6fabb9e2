//! Promise 1: a write answered 2xx survives kill -9 at any moment and, after restart, is in raw
//! Parquet exactly once and counted exactly once in the rollups.
//!
//! The real binary takes load from several connections while every acknowledged point is
//! recorded; it is killed with SIGKILL at random moments and restarted, `AUGUR_CRASH_CYCLES`
//! times (20 by default; more by hand, see docs/durability.md), then stopped cleanly. Checkpoints
//! run every 500 ms and files are written between them, so kills land before, during and after
//! both.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{BooleanArray, Decimal128Array, StringArray, TimestampNanosecondArray, UInt64Array};
use augur_suite::{
    column, http, metric, parquet_files, raw_points_by_id, read_parquet, try_write, AugurServer, TempDir,
};

const CLIENTS: usize = 4;
const SERIES_PER_CLIENT: usize = 5;
const LINES_PER_REQUEST: usize = 100;
const SECOND: i64 = 1_000_000_000;

const CONFIG: &str = r#"
[engine]
resolutions = ["1s", "10s"]
allowed-lateness = "10s"

[wal]
checkpoint-interval = "500ms"

# Small files, written between checkpoints too: a kill then leaves files of an epoch whose
# checkpoint is not recorded, which the restart must delete.
[parquet]
max-age = "300ms"
file-rows = 5000
"#;

/// A small xorshift generator: the kill times vary from run to run, and the seed is printed so a
/// failing sequence can be run again (`AUGUR_CRASH_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A client: requests of fresh points (ids unique over the whole test, times rising per series)
/// until `stop`; returns the ids of the points in requests answered 204.
fn client(addr: SocketAddr, index: usize, next_id: &mut i64, last_time: &mut i64, stop: &AtomicBool) -> Vec<i64> {
    let mut acked = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = augur_storage::now_nanos();
        let mut body = String::new();
        let mut ids = Vec::with_capacity(LINES_PER_REQUEST);
        for line in 0..LINES_PER_REQUEST {
            *last_time = (*last_time + 1_000).max(now);
            let id = *next_id;
            *next_id += 1;
            let host = format!("c{index}s{}", line % SERIES_PER_CLIENT);
            body.push_str(&format!("crash,host={host},region=eu id={id}i {}\n", *last_time));
            ids.push(id);
        }
        match try_write(addr, body.as_bytes()) {
            Some((204, _)) => acked.extend(ids),
            Some((503, _)) | None => std::thread::sleep(Duration::from_millis(5)),
            Some((status, reply)) => panic!("unexpected status {status}: {reply}"),
        }
    }
    acked
}

/// The value of `key=` in a partition folder name above `path`.
fn partition(path: &Path, key: &str) -> String {
    path.ancestors()
        .find_map(|a| a.file_name()?.to_str()?.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key}= folder above {}", path.display()))
}

#[test]
fn acknowledged_points_survive_kill_9_exactly_once_in_raw_parquet_and_rollups() {
    let cycles: usize = std::env::var("AUGUR_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed = std::env::var("AUGUR_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("crash test: {cycles} cycles, seed {seed} (AUGUR_CRASH_SEED={seed} repeats it)");
    let mut rng = Rng(seed);
    let dir = TempDir::new("crash");
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let data = dir.0.join("data");

    let state: Vec<Mutex<(i64, i64)>> = (0..CLIENTS).map(|c| Mutex::new(((c as i64) << 40, 0))).collect();
    let mut acked: HashSet<i64> = HashSet::new();
    let (mut replayed, mut restored) = (0, 0);
    let started = Instant::now();
    for cycle in 0..cycles {
        // Every restart may change the partition count: open windows and detectors move with
        // their series, and the results must not notice.
        let partitions = (1 + rng.below(4)).to_string();
        let server = AugurServer::start_in(&data, &["--config", &config, "--partitions", &partitions]);
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        replayed += metric(&text, "augur_recovery_replayed_records").expect("replayed records metric");
        restored += metric(&text, "augur_recovery_restored_points").expect("restored points metric");
        let addr = server.http;
        let pause = Duration::from_millis(150 + rng.below(900));
        let got = load(addr, &state, || {
            std::thread::sleep(pause);
            server.kill();
        });
        let before = acked.len();
        acked.extend(got);
        println!("cycle {cycle} ({partitions} partitions): {} points acknowledged", acked.len() - before);
    }
    let server = AugurServer::start_in(&data, &["--config", &config]);
    let (_, text) = http(server.http, "GET", "/metrics", b"");
    replayed += metric(&text, "augur_recovery_replayed_records").expect("replayed records metric");
    assert!(server.terminate(Duration::from_secs(60)).success(), "a clean stop after the crashes");
    println!(
        "{} points acknowledged in {:?}; {replayed} log records replayed, {restored} of their points already in a partition's checkpoint",
        acked.len(),
        started.elapsed()
    );
    assert!(acked.len() > 1000, "the load reached the server: {} points", acked.len());
    assert!(replayed > 0, "some kill left records to replay");
    // Partitions are cut one after another under load, so some replayed records fall between
    // two partitions' cuts: the replay must then feed only the partitions after theirs.
    assert!(restored > 0, "some replay started between two partitions' cuts");

    assert!(assert_exactly_once(&data, &acked), "windows closed while running");
}

/// Every point in `acked` is in raw Parquet under `data` once, no point twice, and the rollups
/// equal a recomputation over the raw points, each window once; whether any window closed (was
/// emitted whole) while the server ran.
fn assert_exactly_once(data: &Path, acked: &HashSet<i64>) -> bool {
    let (parquet, temp) = parquet_files(data);
    assert!(temp.is_empty(), "temporary files left: {temp:?}");

    // Raw: every acknowledged point once; no point (acknowledged or not) twice.
    let raw = raw_points_by_id(data, "crash");
    let missing: Vec<&i64> = acked.iter().filter(|id| !raw.contains_key(id)).take(10).collect();
    assert!(missing.is_empty(), "acknowledged points missing from raw Parquet, e.g. {missing:?}");

    // Rollups: one row per (host, resolution, window), equal to the count and exact sum of `id`
    // over the raw points in it.
    let mut oracle: BTreeMap<(String, String, i64), (u64, i128)> = BTreeMap::new();
    for (id, (host, time)) in &raw {
        for (resolution, nanos) in [("1s", SECOND), ("10s", 10 * SECOND)] {
            let window = time.div_euclid(nanos) * nanos;
            let entry = oracle.entry((host.clone(), resolution.to_owned(), window)).or_default();
            entry.0 += 1;
            entry.1 += i128::from(*id);
        }
    }
    let mut rollups: BTreeMap<(String, String, i64), (u64, i128, bool)> = BTreeMap::new();
    for path in parquet.iter().filter(|p| p.to_string_lossy().contains("/rollups/")) {
        let resolution = partition(path, "resolution");
        for batch in read_parquet(path) {
            let (keys, fields, starts, counts, sums, partial) = (
                column::<StringArray>(&batch, "series_key"),
                column::<StringArray>(&batch, "field"),
                column::<TimestampNanosecondArray>(&batch, "window_start"),
                column::<UInt64Array>(&batch, "count"),
                column::<Decimal128Array>(&batch, "int_sum"),
                column::<BooleanArray>(&batch, "partial"),
            );
            for row in 0..batch.num_rows() {
                assert_eq!(fields.value(row), "id");
                let host = keys.value(row).split("host=").nth(1).unwrap().split(',').next().unwrap().to_owned();
                let key = (host, resolution.clone(), starts.value(row));
                let value = (counts.value(row), sums.value(row), partial.value(row));
                if let Some(previous) = rollups.insert(key.clone(), value) {
                    panic!("window {key:?} has two rollup rows: {previous:?} and {value:?}");
                }
            }
        }
    }
    let got: BTreeMap<_, _> = rollups.iter().map(|(k, (count, sum, _))| (k.clone(), (*count, *sum))).collect();
    let differ: Vec<_> = oracle.iter().filter(|(k, v)| got.get(*k) != Some(v)).take(5).collect();
    assert!(differ.is_empty(), "rollups differ from the oracle over raw, e.g. (window, oracle): {differ:?}");
    assert_eq!(got.len(), oracle.len(), "no rollup row without points");
    rollups.values().any(|(_, _, partial)| !partial)
}

/// Load from every client until `until` returns; the acknowledged ids.
fn load(addr: SocketAddr, state: &[Mutex<(i64, i64)>], until: impl FnOnce()) -> Vec<i64> {
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let handles: Vec<_> = state
            .iter()
            .enumerate()
            .map(|(index, state)| {
                let stop = stop.clone();
                scope.spawn(move || {
                    let mut state = state.lock().unwrap();
                    let (next_id, last_time) = &mut *state;
                    client(addr, index, next_id, last_time, &stop)
                })
            })
            .collect();
        until();
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn a_crash_in_the_middle_of_a_checkpoint_restores_exactly() {
    let dir = TempDir::new("crash-checkpoint");
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let data = dir.0.join("data");
    let state: Vec<Mutex<(i64, i64)>> = (0..CLIENTS).map(|c| Mutex::new(((c as i64) << 40, 0))).collect();
    let mut acked: HashSet<i64> = HashSet::new();

    // The server aborts itself in its second checkpoint, once one partition's state file is
    // written and before the checkpoint is recorded.
    let fault = [("AUGUR_FAULT", "checkpoint-partition-written")];
    let server = AugurServer::start_in_with_env(&data, &["--config", &config, "--partitions", "3"], &fault);
    let addr = server.http;
    acked.extend(load(addr, &state, || {
        assert!(!server.wait_for_exit(Duration::from_secs(60)).success(), "the fault aborts the server");
    }));
    let state_dir = data.join("state");
    let manifest = std::fs::read(state_dir.join("checkpoint")).expect("the first checkpoint was recorded");
    assert_eq!(u64::from_le_bytes(manifest[8..16].try_into().unwrap()), 1, "the manifest is still the first one's");
    let files: Vec<String> =
        std::fs::read_dir(&state_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(
        files.iter().any(|f| f.starts_with("partition-") && f.ends_with(".2")),
        "the crash left part of the second checkpoint: {files:?}"
    );

    // Restarted with another partition count, it resumes from the first checkpoint: the files of
    // the second are deleted, and the log after the first is replayed.
    let server = AugurServer::start_in(&data, &["--config", &config, "--partitions", "2"]);
    let (_, text) = http(server.http, "GET", "/metrics", b"");
    assert!(metric(&text, "augur_recovery_replayed_records").expect("replayed records metric") > 0);
    let addr = server.http;
    acked.extend(load(addr, &state, || std::thread::sleep(Duration::from_millis(1500))));
    assert!(server.terminate(Duration::from_secs(60)).success(), "a clean stop after the crash");
    assert!(acked.len() > 500, "the load reached the server: {} points", acked.len());
    assert_exactly_once(&data, &acked);
}
