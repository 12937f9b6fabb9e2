//! The hot tier end to end: the real `augur serve` writing to real PostgreSQL servers started by
//! the test, read back through the query API and with `psql`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use augur_engine::local_postgres::LocalPostgres;
use augur_suite::{cpu_with_spike, http, postgres_config, postgres_shards, AugurServer, TempDir, MINUTE};

const NANOS: i64 = 1_000_000_000;
/// A tag value full of SQL; in line protocol its spaces are escaped.
const HOSTILE_HOST: &str = "o'brien\"; DROP TABLE series; --";

/// Rows, total `count` and total `sum` of `rollups` on one shard.
fn checksum(shard: &LocalPostgres) -> String {
    shard.psql("augur", "SELECT count(*), sum(count), round(sum(sum)::numeric, 6) FROM rollups").unwrap()
}

fn rows(shard: &LocalPostgres) -> u64 {
    shard.psql("augur", "SELECT count(*) FROM rollups").unwrap().parse().unwrap()
}

fn host_name(h: usize) -> String {
    if h == 0 {
        HOSTILE_HOST.to_owned()
    } else {
        format!("host-{h}")
    }
}

/// Line protocol: `hosts` hosts, one point per host per second for `seconds` from `start` (ns);
/// fields `usage` (float) and `jobs` (integer).
fn body(hosts: usize, start: i64, seconds: i64) -> String {
    let mut out = String::new();
    for s in 0..seconds {
        for h in 0..hosts {
            let host = host_name(h).replace(' ', "\\ ").replace(',', "\\,").replace('=', "\\=");
            out.push_str(&format!(
                "cpu,host={host},region=eu usage={},jobs={}i {}\n",
                value(h, s),
                (h as i64 + s) % 7,
                start + s * NANOS
            ));
        }
    }
    out
}

fn value(h: usize, s: i64) -> f64 {
    ((h as i64 * 7 + s * 3) % 100) as f64 + 0.25
}

/// Expected 10 s windows of `usage`: (host, window start in ns) → (count, sum, min, max).
fn oracle(hosts: usize, start: i64, seconds: i64) -> BTreeMap<(String, i64), (i64, f64, f64, f64)> {
    let mut out: BTreeMap<(String, i64), (i64, f64, f64, f64)> = BTreeMap::new();
    for s in 0..seconds {
        for h in 0..hosts {
            let t = start + s * NANOS;
            let v = value(h, s);
            let e = out.entry((host_name(h), t - t.rem_euclid(10 * NANOS))).or_insert((0, 0.0, f64::MAX, f64::MIN));
            *e = (e.0 + 1, e.1 + v, e.2.min(v), e.3.max(v));
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rfc3339(nanos: i64) -> String {
    let secs = nanos / NANOS;
    let out =
        std::process::Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"]).output();
    String::from_utf8(out.unwrap().stdout).unwrap().trim().to_owned()
}

/// Every 10 s `usage` rollup the API returns for the window range, by (host, window start).
fn api_rollups(server: &AugurServer, start: i64, end: i64) -> BTreeMap<(String, i64), (i64, f64, f64, f64)> {
    let path = format!(
        "/api/v1/rollups?measurement=cpu&field=usage&resolution=10s&start={}&end={}",
        rfc3339(start),
        rfc3339(end)
    );
    let (status, body) = http(server.http, "GET", &path, b"");
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let key = row["series"].as_str().unwrap();
        let host = key.split(",host=").nth(1).unwrap().split(",region=").next().unwrap();
        let host = host.replace("\\ ", " ").replace("\\,", ",").replace("\\=", "=");
        let window = row["window_start"].as_str().unwrap();
        let out_date = std::process::Command::new("date").args(["-u", "-d", window, "+%s"]).output().unwrap();
        let secs: i64 = String::from_utf8(out_date.stdout).unwrap().trim().parse().unwrap();
        let f = |name: &str| row[name].as_f64().unwrap();
        let value = (row["count"].as_i64().unwrap(), f("sum"), f("min"), f("max"));
        assert!(out.insert((host.clone(), secs * NANOS), value).is_none(), "one row per window: {host} {window}");
    }
    out
}

fn assert_same(
    got: &BTreeMap<(String, i64), (i64, f64, f64, f64)>,
    want: &BTreeMap<(String, i64), (i64, f64, f64, f64)>,
) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same windows");
    for (key, (count, sum, min, max)) in want {
        let g = got[key];
        assert_eq!((g.0, g.2, g.3), (*count, *min, *max), "{key:?}");
        assert!((g.1 - sum).abs() < 1e-9 * sum.abs().max(1.0), "{key:?}: sum {} != {sum}", g.1);
    }
}

/// No shard refused a batch as invalid (those are kept in `spool/<shard>/rejected/`).
fn assert_nothing_rejected(data: &std::path::Path) {
    let Ok(shards) = std::fs::read_dir(data.join("spool")) else { return };
    for shard in shards {
        let rejected = shard.unwrap().path().join("rejected");
        let files = std::fs::read_dir(&rejected).map_or(0, |d| d.count());
        assert_eq!(files, 0, "batches rejected in {}", rejected.display());
    }
}

/// Appends `text` to the config file at `path`.
fn append_config(path: &std::path::Path, text: &str) {
    let mut config = std::fs::read_to_string(path).unwrap();
    config.push_str(text);
    std::fs::write(path, config).unwrap();
}

/// An hour-aligned start two hours ago, so every window lies in one hour and is long closed.
fn past_hour() -> i64 {
    let now = augur_storage::now_nanos();
    now - now.rem_euclid(3600 * NANOS) - 2 * 3600 * NANOS
}

#[test]
fn rollups_reach_every_shard_read_back_equal_the_oracle_and_a_replay_after_kill_changes_nothing() {
    let shards = postgres_shards("e2e", 2);
    let dir = TempDir::new("pg-e2e");
    let config = postgres_config(&dir.0, &[&shards[0], &shards[1]], "");
    let config = config.to_str().unwrap();
    let data = dir.0.join("data");
    let (hosts, seconds, start) = (40, 60, past_hour());
    // Plus one field that changes type inside a window: a row per kind. First, so that the
    // watermark has not passed them.
    let input =
        format!("cpu,host=mixed,region=eu mode=1i {start}\ncpu,host=mixed,region=eu mode=2.5 {}\n", start + NANOS)
            + &body(hosts, start, seconds);

    // Killed (-9) once the shards hold rows: the restart replays the log and upserts those rows
    // again, and the result is every window once.
    let server = AugurServer::start_in(&data, &["--config", config]);
    assert_eq!(http(server.http, "POST", "/write", input.as_bytes()).0, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Before the first write the shard may not have its tables yet: that counts as no rows.
    let written = |shard: &LocalPostgres| -> u64 {
        shard.psql("augur", "SELECT count(*) FROM rollups").ok().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    while written(&shards[0]) + written(&shards[1]) == 0 {
        assert!(Instant::now() < deadline, "no rows reached the shards within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let server = AugurServer::start_in(&data, &["--config", config]);
    assert!(server.terminate(Duration::from_secs(60)).success());
    // Per host and field: six 10 s windows, one minute, one hour; and `mode`'s two kinds at each
    // of three resolutions.
    let expected_rows = (hosts * 2 * 8 + 6) as u64;
    let (first, second) = (rows(&shards[0]), rows(&shards[1]));
    assert!(first > 0 && second > 0, "both shards hold rows: {first} and {second}");
    assert_eq!(first + second, expected_rows, "every window once");
    let before = (checksum(&shards[0]), checksum(&shards[1]));

    // A clean restart without new data: the open windows come back from the last checkpoint and
    // are emitted again as they were.
    let server = AugurServer::start_in(&data, &["--config", config]);
    assert!(server.terminate(Duration::from_secs(60)).success());
    assert_eq!((checksum(&shards[0]), checksum(&shards[1])), before, "a restart leaves the same rows");
    assert_nothing_rejected(&data);
    let kinds: Vec<String> = shards
        .iter()
        .map(|s| {
            s.psql(
                "augur",
                "SELECT string_agg(kind, ',' ORDER BY kind) FROM rollups WHERE field = 'mode' AND resolution = '10s'",
            )
            .unwrap()
        })
        .collect();
    assert_eq!(kinds.concat(), "float,integer", "a row per kind");

    let server = AugurServer::start_in(&data, &["--config", config]);
    let got = api_rollups(&server, start, start + seconds * NANOS);
    assert_same(&got, &oracle(hosts, start, seconds));

    // Injection: SQL in a tag value and in parameters stays data.
    let (status, body) =
        http(server.http, "GET", &format!("/api/v1/series?tag.host={}", percent_encode(HOSTILE_HOST)), b"");
    assert_eq!(status, 200, "{body}");
    let series: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(series.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(series[0]["tags"]["host"], HOSTILE_HOST);
    let (status, body) =
        http(server.http, "GET", &format!("/api/v1/series?measurement={}", percent_encode("cpu' OR '1'='1")), b"");
    assert_eq!((status, body.as_str()), (200, "[]"));
    assert_eq!(shards[0].psql("augur", "SELECT count(*) > 0 FROM series").unwrap(), "t", "the table is still there");

    // The latest values, and parameters checked with clear errors.
    let (status, body) = http(server.http, "GET", "/api/v1/latest?measurement=cpu&tag.host=host-3&since=now-1d", b"");
    assert_eq!(status, 200, "{body}");
    let latest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let usage = latest.as_array().unwrap().iter().find(|r| r["field"] == "usage").expect("usage is there");
    assert_eq!(usage["value"].as_f64(), Some(value(3, seconds - 1)));
    let jobs = latest.as_array().unwrap().iter().find(|r| r["field"] == "jobs").expect("jobs is there");
    assert_eq!(jobs["value"].as_i64(), Some((3 + seconds - 1) % 7));
    let (status, body) =
        http(server.http, "GET", "/api/v1/latest?measurement=cpu&tag.host=mixed&field=mode&since=now-1d", b"");
    assert_eq!(status, 200, "{body}");
    let mode: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(mode.as_array().unwrap().len(), 2, "a value per kind: {body}");
    for (query, complaint) in [
        ("/api/v1/rollups?resolution=7s", "is not one of 10s, 1m, 1h"),
        ("/api/v1/rollups?start=now&end=now-1h", "start must be before end"),
        ("/api/v1/rollups?start=yesterday", "use RFC 3339, now or now-<duration>"),
        ("/api/v1/rollups?measurement=cpu&hots=1", "unknown parameter(s): hots"),
        ("/api/v1/rollups?measurement=cpu&resolution=10s&start=2000-01-01T00:00:00Z", "over the limit"),
    ] {
        let (status, body) = http(server.http, "GET", query, b"");
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(complaint), "{query}: {body}");
    }
    assert!(server.terminate(Duration::from_secs(60)).success());
}

/// Posts `body`, retrying while the server sheds load (503); panics on anything else.
fn post_acknowledged(server: &AugurServer, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, reply) = http(server.http, "POST", "/write", body.as_bytes());
        match status {
            204 => return,
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("{status}: {reply}"),
        }
    }
}

fn shard_metric(server: &AugurServer, name: &str, shard: usize) -> u64 {
    let (_, text) = http(server.http, "GET", "/metrics", b"");
    augur_suite::metric(&text, &format!("{name}{{shard=\"shard-{shard}\"}}"))
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

#[test]
fn a_shard_outage_spools_its_rows_and_replays_them_exactly_once_while_the_other_shard_keeps_going() {
    let shards = postgres_shards("outage", 2);
    let dir = TempDir::new("pg-outage");
    let config = postgres_config(&dir.0, &[&shards[0], &shards[1]], "timeout = \"1s\"\nmax-retry-interval = \"30s\"");
    let data = dir.0.join("data");
    let (hosts, seconds, start) = (20, 150, past_hour());
    let server = AugurServer::start_in(&data, &["--config", config.to_str().unwrap()]);
    let mut during_outage = (0, 0);
    for s in 0..seconds {
        post_acknowledged(&server, &body(hosts, start + s * NANOS, 1));
        if s == 40 {
            shards[1].stop().unwrap();
            during_outage.0 = shard_metric(&server, "augur_postgres_rows_written_total", 0);
        }
        if s == 110 {
            during_outage.1 = shard_metric(&server, "augur_postgres_rows_written_total", 0);
            assert!(
                shard_metric(&server, "augur_postgres_batches_spooled_total", 1) > 0,
                "shard-1's rows were spooled"
            );
            assert_eq!(shard_metric(&server, "augur_postgres_breaker_open", 1), 1);
            shards[1].start_again().unwrap();
        }
        if s == 130 {
            shards[1].stop().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(during_outage.1 > during_outage.0, "shard-0 kept being written during the outage: {during_outage:?}");
    // Back just before shutdown: the final flush still delivers its spool.
    shards[1].start_again().unwrap();
    assert!(server.terminate(Duration::from_secs(60)).success());
    // 150 s from an hour start: fifteen 10 s windows, three minutes (2.5), one hour.
    let expected_rows = (hosts * 2 * (15 + 3 + 1)) as u64;
    assert_eq!(rows(&shards[0]) + rows(&shards[1]), expected_rows, "every window exactly once");
    let counted: i64 = shards
        .iter()
        .map(|s| {
            s.psql("augur", "SELECT coalesce(sum(count), 0) FROM rollups WHERE resolution = '10s'")
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, (hosts as i64) * 2 * seconds, "every acknowledged value counted once");
    let spool =
        std::fs::read_dir(data.join("spool/shard-1")).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    assert_eq!(spool, 0, "the spool drained");
    assert_nothing_rejected(&data);
}

#[test]
fn a_hung_shard_is_timed_out_and_spooled_while_ingest_and_the_other_shard_go_on() {
    let shards = postgres_shards("hung", 2);
    let dir = TempDir::new("pg-hung");
    let config = postgres_config(&dir.0, &[&shards[0], &shards[1]], "timeout = \"1s\"\nmax-retry-interval = \"500ms\"");
    let data = dir.0.join("data");
    let (hosts, seconds, start) = (20, 120, past_hour());
    let server = AugurServer::start_in(&data, &["--config", config.to_str().unwrap()]);
    let mut during = (0, 0);
    for s in 0..seconds {
        if s == 30 {
            shards[1].pause().unwrap();
            during.0 = shard_metric(&server, "augur_postgres_rows_written_total", 0);
        }
        post_acknowledged(&server, &body(hosts, start + s * NANOS, 1));
        if s == 90 {
            during.1 = shard_metric(&server, "augur_postgres_rows_written_total", 0);
            assert!(
                shard_metric(&server, "augur_postgres_batches_spooled_total", 1) > 0,
                "the hung shard's rows were spooled"
            );
            shards[1].resume().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(during.1 > during.0, "shard-0 kept being written while shard-1 hung: {during:?}");
    assert!(server.terminate(Duration::from_secs(60)).success());
    let counted: i64 = shards
        .iter()
        .map(|s| {
            let sql = "SELECT coalesce(sum(count), 0) FROM rollups WHERE resolution = '10s'";
            s.psql("augur", sql).unwrap().parse::<i64>().unwrap()
        })
        .sum();
    assert_eq!(counted, (hosts as i64) * 2 * seconds, "every acknowledged value counted once");
    assert_nothing_rejected(&data);
}

#[test]
fn growing_from_two_to_three_shards_moves_nothing_and_queries_stay_complete() {
    let shards = postgres_shards("grow", 3);
    let dir = TempDir::new("pg-grow");
    let data = dir.0.join("data");
    let hosts = 30;
    let old = past_hour();
    // A short max-future, so the new epoch (which starts past it) begins within seconds.
    let model = "[model]\nmax-future = \"5s\"\n";
    let two = postgres_config(&dir.0, &[&shards[0], &shards[1]], "");
    append_config(&two, model);
    let server = AugurServer::start_in(&data, &["--config", two.to_str().unwrap()]);
    post_acknowledged(&server, &body(hosts, old, 30));
    assert!(server.terminate(Duration::from_secs(60)).success());
    let before = (checksum(&shards[0]), checksum(&shards[1]));

    let three = postgres_config(&dir.0, &[&shards[0], &shards[1], &shards[2]], "");
    append_config(&three, model);
    let server = AugurServer::start_in(&data, &["--config", three.to_str().unwrap()]);
    let map: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("shard-map.json")).unwrap()).unwrap();
    let epochs = map["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2, "a new epoch: {map}");
    let epoch_start = epochs[1]["starts_at"].as_i64().unwrap();
    assert!(epoch_start > augur_storage::now_nanos(), "the epoch starts past max-future");
    // Windows that start in the new epoch spread over all three shards.
    let new = epoch_start - epoch_start.rem_euclid(10 * NANOS) + 10 * NANOS;
    while augur_storage::now_nanos() < new - 4 * NANOS {
        std::thread::sleep(Duration::from_millis(100));
    }
    post_acknowledged(&server, &body(hosts, new, 1));
    assert!(server.terminate(Duration::from_secs(60)).success());
    assert!(rows(&shards[2]) > 0, "the new shard takes new windows");
    let newest_only = shards[2]
        .psql("augur", &format!("SELECT min(window_start) >= to_timestamp({}) FROM rollups", epoch_start as f64 / 1e9))
        .unwrap();
    assert_eq!(newest_only, "t", "no window from before the epoch on the new shard");
    let kept: Vec<String> = [&shards[0], &shards[1]]
        .iter()
        .map(|s| {
            let sql = format!(
                "SELECT count(*), sum(count) FROM rollups WHERE window_start < to_timestamp({})",
                (old / NANOS) + 3600
            );
            s.psql("augur", &sql).unwrap()
        })
        .collect();
    let old_rows: Vec<String> =
        [before.0, before.1].iter().map(|c| c.rsplit_once('|').map(|(head, _)| head.to_owned()).unwrap()).collect();
    assert_eq!(kept, old_rows, "the old rows stayed where they were");

    let server = AugurServer::start_in(&data, &["--config", three.to_str().unwrap()]);
    assert_same(&api_rollups(&server, old, old + 30 * NANOS), &oracle(hosts, old, 30));
    assert_same(&api_rollups(&server, new, new + 10 * NANOS), &oracle(hosts, new, 1));
    assert!(server.terminate(Duration::from_secs(60)).success());
    assert_nothing_rejected(&data);
}

#[test]
fn a_full_spool_makes_ingest_answer_503_and_nothing_acknowledged_is_lost() {
    let shards = postgres_shards("full", 1);
    let dir = TempDir::new("pg-full");
    let config = postgres_config(
        &dir.0,
        &[&shards[0]],
        "spool-max-bytes = 1048576\nqueue-batches = 1\nmax-retry-interval = \"200ms\"\ntimeout = \"1s\"",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[router]\nqueue-capacity-bytes = 1048576\n");
    std::fs::write(&config, text).unwrap();
    let data = dir.0.join("data");
    let server = AugurServer::start_in(&data, &["--config", config.to_str().unwrap()]);
    shards[0].stop().unwrap();

    let (hosts, start) = (200, past_hour());
    let mut acknowledged = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Until the shard's spool is at its bound, a 503 is only the pipelines catching up: retry it.
    // After that, the pipelines wait for the shard, so ingest must keep refusing.
    let refused = loop {
        assert!(Instant::now() < deadline, "ingest still accepts after {acknowledged} requests");
        let body = body(hosts, start + acknowledged * NANOS, 1);
        let spool_full = shard_metric(&server, "augur_postgres_spool_bytes", 0) >= 1 << 20;
        let retry_until = Instant::now() + Duration::from_secs(if spool_full { 3 } else { 30 });
        let mut accepted = false;
        while Instant::now() < retry_until {
            let (status, reply) = http(server.http, "POST", "/write", body.as_bytes());
            match status {
                204 => {
                    accepted = true;
                    break;
                }
                503 => std::thread::sleep(Duration::from_millis(50)),
                _ => panic!("{status}: {reply}"),
            }
        }
        if !accepted {
            assert!(spool_full, "refused for 30 s before the spool was full");
            break body;
        }
        acknowledged += 1;
    };
    assert_eq!(shard_metric(&server, "augur_postgres_breaker_open", 0), 1);

    // The shard comes back: the spool drains and the refused request goes through on retry.
    shards[0].start_again().unwrap();
    post_acknowledged(&server, &refused);
    acknowledged += 1;
    for s in 0..20 {
        post_acknowledged(&server, &body(hosts, start + (acknowledged + s) * NANOS, 1));
    }
    acknowledged += 20;
    assert!(server.terminate(Duration::from_secs(60)).success());
    let counted: i64 = shards[0]
        .psql("augur", "SELECT coalesce(sum(count), 0) FROM rollups WHERE resolution = '10s'")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(counted, hosts as i64 * 2 * acknowledged, "every acknowledged value counted once, none refused");
    assert_nothing_rejected(&data);
}

#[test]
fn day_partitions_past_hot_retention_are_dropped_and_old_windows_stay_out_of_postgres() {
    let shards = postgres_shards("retention", 1);
    let dir = TempDir::new("pg-retention");
    let config = postgres_config(&dir.0, &[&shards[0]], "hot-retention = \"2d\"");
    let data = dir.0.join("data");
    let server = AugurServer::start_in(&data, &["--config", config.to_str().unwrap()]);
    // The writer migrates at start; an expired day partition left from earlier days:
    let deadline = Instant::now() + Duration::from_secs(30);
    while shards[0].psql("augur", "SELECT to_regclass('rollups') IS NOT NULL").unwrap() != "t" {
        assert!(Instant::now() < deadline, "no rollups table");
        std::thread::sleep(Duration::from_millis(50));
    }
    shards[0]
        .psql(
            "augur",
            "CREATE TABLE rollups_20200101 PARTITION OF rollups FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00')",
        )
        .unwrap();
    // And one a crash left detached between detaching and dropping.
    shards[0].psql("augur", "CREATE TABLE rollups_20200102 (LIKE rollups)").unwrap();
    let recent = past_hour();
    let old = recent - 5 * 86_400 * NANOS;
    post_acknowledged(&server, &body(3, old, 10));
    post_acknowledged(&server, &body(3, recent, 10));
    assert!(server.terminate(Duration::from_secs(60)).success());
    let partitions = shards[0]
        .psql(
            "augur",
            "SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'rollups'::regclass",
        )
        .unwrap();
    assert!(!partitions.contains("rollups_20200101"), "expired partition dropped: {partitions}");
    let leftover = shards[0].psql("augur", "SELECT to_regclass('rollups_20200102') IS NULL").unwrap();
    assert_eq!(leftover, "t", "an expired day left detached is dropped too");
    assert_eq!(partitions.split(',').count(), 1, "only the recent day: {partitions}");
    let oldest = shards[0].psql("augur", "SELECT min(window_start) >= now() - interval '2 days' FROM rollups").unwrap();
    assert_eq!(oldest, "t", "windows older than hot-retention live in Parquet only");
}

#[test]
fn exact_integer_aggregates_reach_postgresql_as_exact_numerics() {
    let shards = postgres_shards("numeric", 1);
    let dir = TempDir::new("pg-numeric");
    let config = postgres_config(&dir.0, &[&shards[0]], "");
    let data = dir.0.join("data");
    let server = AugurServer::start_in(&data, &["--config", config.to_str().unwrap()]);
    let t = past_hour();
    // Sums past 64 bits, negative extremes, zero, and base-10000 digits with inner zeros.
    let body = format!(
        "big,host=a u=18446744073709551615u {t}\nbig,host=a u=18446744073709551615u {}\n\
         big,host=b i=-9223372036854775808i {t}\nbig,host=b i=-9223372036854775808i {}\n\
         big,host=c i=0i {t}\nbig,host=d i=100000002i {t}\nbig,host=d i=-7i {}\nbig,host=e i=-100000000i {t}\n",
        t + NANOS,
        t + NANOS,
        t + NANOS
    );
    assert_eq!(http(server.http, "POST", "/write", body.as_bytes()).0, 204);
    assert!(server.terminate(Duration::from_secs(60)).success());
    let sql = "SELECT s.tags->>'host', r.int_sum::text, r.int_min::text, r.int_max::text, r.int_last::text \
               FROM rollups r JOIN series s ON s.id = r.series_id WHERE r.resolution = '10s' ORDER BY 1";
    let rows = shards[0].psql("augur", sql).unwrap();
    assert_eq!(
        rows,
        "a|36893488147419103230|18446744073709551615|18446744073709551615|18446744073709551615\n\
         b|-18446744073709551616|-9223372036854775808|-9223372036854775808|-9223372036854775808\n\
         c|0|0|0|0\n\
         d|99999995|-7|100000002|-7\n\
         e|-100000000|-100000000|-100000000|-100000000"
    );
    assert_nothing_rejected(&data);
}

#[test]
fn anomaly_events_reach_postgresql_and_the_predictions_api_once() {
    let shards = postgres_shards("predictions", 1);
    let dir = TempDir::new("pg-predictions");
    let config = postgres_config(&dir.0, &[&shards[0]], "");
    let config = config.to_str().unwrap();
    let data = dir.0.join("data");
    let start = augur_storage::now_nanos() / MINUTE * MINUTE - 12 * 60 * MINUTE;
    let server = AugurServer::start_in(&data, &["--config", config]);
    let body = cpu_with_spike(start, 0..600, (400..405, 50.0));
    assert_eq!(http(server.http, "POST", "/write", body.as_bytes()).0, 204);
    assert!(server.terminate(Duration::from_secs(60)).success());
    let rows = shards[0]
        .psql(
            "augur",
            "SELECT state || '|' || field || '|' || entity || '|' || (end_time IS NOT NULL) FROM predictions WHERE kind = 'anomaly'",
        )
        .unwrap();
    assert_eq!(rows.trim(), "closed|usage|web1|true", "one event, closed: {rows}");

    let server = AugurServer::start_in(&data, &["--config", config]);
    let (status, reply) =
        http(server.http, "GET", "/api/v1/predictions?kind=anomaly&host=web1&since=now-24h&min_score=0.5", b"");
    assert_eq!(status, 200, "{reply}");
    let events: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{reply}");
    assert_eq!(
        (events[0]["state"].as_str(), events[0]["field"].as_str(), events[0]["region"].as_str()),
        (Some("closed"), Some("usage"), Some("eu"))
    );
    assert!(events[0]["peak_value"].as_f64().unwrap() > 80.0, "{reply}");
    // The host's risk: one row per host, its latest change.
    let (status, reply) = http(server.http, "GET", "/api/v1/predictions?kind=risk&host=web1", b"");
    assert_eq!(status, 200, "{reply}");
    let risk: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(risk.as_array().map(Vec::len), Some(1), "{reply}");
    assert_eq!((risk[0]["field"].as_str(), risk[0]["peak_score"].as_f64()), (Some("usage"), Some(1.0)), "{reply}");
    let (status, _) = http(server.http, "GET", "/api/v1/predictions?host=web2", b"");
    assert_eq!(status, 200);
    let (status, reply) = http(server.http, "GET", "/api/v1/predictions?min_score=2", b"");
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("min_score"), "{reply}");
    let (status, reply) = http(server.http, "GET", "/api/v1/predictions?hots=web1", b"");
    assert_eq!((status, reply.contains("hots")), (400, true), "{reply}");
    assert!(server.terminate(Duration::from_secs(60)).success());
}

#[test]
fn a_disk_filling_over_http_is_forecast_in_postgresql_parquet_and_the_api_before_it_is_full() {
    let shards = postgres_shards("exhaustion", 1);
    let dir = TempDir::new("pg-exhaustion");
    let config = postgres_config(&dir.0, &[&shards[0]], "");
    let config = config.to_str().unwrap();
    let data = dir.0.join("data");
    // 30 % to 100 % over 48 hours, one sample a minute with noise; 30 hours of it are sent, so
    // the disk fills 18 hours after the last sample.
    let start = augur_storage::now_nanos() / MINUTE * MINUTE - 31 * 60 * MINUTE;
    let full_at = start + 48 * 60 * MINUTE;
    let body: String = (0..30 * 60)
        .map(|m: i64| {
            let noise = ((m * 7919) % 21) as f64 / 10.0 - 1.0;
            let used = 30.0 + 70.0 * m as f64 / (48.0 * 60.0) + noise;
            format!(
                "disk,host=db1,region=eu,path=/ used_percent={used},free={}i {}\n",
                (1000.0 - used * 10.0) as i64,
                start + m * MINUTE
            )
        })
        .collect();
    let server = AugurServer::start_in(&data, &["--config", config]);
    assert_eq!(http(server.http, "POST", "/write", body.as_bytes()).0, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let (status, reply) =
            http(server.http, "GET", "/api/v1/predictions?kind=exhaustion&host=db1&since=now-48h", b"");
        // 503 until the shard's writer has connected and created the tables.
        assert!(status == 200 || status == 503, "{status}: {reply}");
        if status == 200 && reply.contains("used_percent") && reply.contains("\"free\"") {
            break reply;
        }
        assert!(Instant::now() < deadline, "no exhaustion events in the API within 30 s: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let events: serde_json::Value = serde_json::from_str(&reply).unwrap();
    for event in events.as_array().unwrap() {
        assert_eq!(event["state"], "open", "{event}");
        let forecast = event["forecast"].as_str().unwrap().replace('T', " ");
        let forecast = augur_engine::predict::nab::parse_time(forecast.trim_end_matches('Z')).unwrap() * 1_000_000_000;
        let error = (forecast - full_at).abs() as f64 / (full_at - (start + 30 * 60 * MINUTE)) as f64;
        assert!(error < 0.1, "forecast {forecast} vs full at {full_at}: {:.1} % of the time left", error * 100.0);
    }
    assert!(server.terminate(Duration::from_secs(60)).success());
    let rows = shards[0]
        .psql("augur", "SELECT count(*) FROM predictions WHERE kind = 'exhaustion' AND forecast_time IS NOT NULL")
        .unwrap();
    assert_eq!(rows.trim(), "2", "one event for each capacity field: {rows}");
    let parquet: Vec<_> = augur_suite::parquet_files(&data)
        .0
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/predictions/"))
        .collect();
    assert!(!parquet.is_empty(), "the events are in Parquet too");
}
