//! End-to-end tests of the real `augur` binary.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use augur_suite::{augur_binary, http, metric, parquet_files, AugurServer, TempDir};

#[test]
fn serve_ingests_http_and_tcp_and_drains_on_sigterm() {
    let server = AugurServer::start(&["--partitions", "3"]);
    let (status, body) = http(server.http, "POST", "/write?db=x&precision=s", b"cpu,host=a,region=eu v=1 1700000000\n");
    assert_eq!(status, 204, "{body}");
    let (status, body) = http(server.http, "POST", "/api/v2/write", b"cpu,host=b v=2\ncpu v=oops\n");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"line\":2"), "{body}");

    let mut tcp = TcpStream::connect(server.tcp).unwrap();
    tcp.write_all(b"cpu,host=c v=3\ncpu,host=d v=4\n").unwrap();
    drop(tcp);

    // TCP has no acknowledgement: wait for the counters to show the points.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        if metric(&text, "augur_ingest_points_accepted_total") == Some(4) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(metric(&text, "augur_ingest_points_accepted_total"), Some(4), "{text}");
    assert_eq!(
        metric(&text, "augur_ingest_lines_rejected_total{protocol=\"http\",reason=\"invalid\"}"),
        Some(1),
        "{text}"
    );
    assert_eq!(text.matches("augur_router_points_total{partition=").count(), 3, "{text}");
    assert!(metric(&text, "augur_parquet_buffered_bytes").is_some(), "the Parquet sink reports: {text}");
    assert_eq!(metric(&text, "augur_parquet_write_errors_total"), Some(0), "{text}");

    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn loadgen_drives_every_protocol_and_reports_acknowledged_writes_as_json() {
    let server = AugurServer::start(&["--graphite-addr", "127.0.0.1:0"]);
    let graphite = server.graphite.expect("a Graphite listener");
    let protocols = ["http", "tcp", "prometheus", "otlp", "jsonlines", "collectd", "graphite"];
    for protocol in protocols {
        let url = match protocol {
            "tcp" => format!("tcp://{}", server.tcp),
            "graphite" => format!("tcp://{graphite}"),
            _ => format!("http://{}", server.http),
        };
        let mut args = vec!["loadgen", "--url", &url, "--protocol", protocol, "--duration", "1s"];
        args.extend(["--hosts", "50", "--batch", "100", "--connections", "2", "--json"]);
        if matches!(protocol, "http" | "otlp") {
            args.push("--gzip");
        }
        let out = Command::new(augur_binary()).args(&args).output().unwrap();
        assert!(out.status.success(), "{protocol}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        for key in
            ["points_per_s", "values_per_s", "points_total", "values_total", "p50_ms", "p99_ms", "max_ms", "errors"]
        {
            assert!(report.get(key).is_some(), "{protocol}: {key} missing in {report}");
        }
        assert_eq!(report["protocol"], protocol, "{report}");
        assert_eq!(report["errors"], 0, "{protocol}: {report}");
        let points = report["points_total"].as_u64().unwrap();
        assert!(points > 0 && points.is_multiple_of(100), "{protocol}: {report}");
        assert_eq!(report["values_total"].as_u64().unwrap(), points * 10);
    }
    // Each protocol's points reached the server as that protocol's (line protocol over TCP and
    // Graphite stream, so those count once their last chunk is read).
    let deadline = Instant::now() + Duration::from_secs(10);
    for protocol in protocols {
        let name = format!("augur_ingest_points_accepted_total{{protocol=\"{protocol}\"}}");
        while metric(&http(server.http, "GET", "/metrics", b"").1, &name).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "nothing accepted as {name}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The counters balance once the last TCP chunk is through: every parsed point was accepted
    // or shed, the pipelines processed every accepted point, each one either aggregated or late,
    // and every accepted point is written to raw Parquet or still on its way (queued in a
    // partition, buffered for Parquet).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = http(server.http, "GET", "/metrics", b"");
        let sum = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        let (accepted, parsed, shed) = (
            sum("augur_ingest_points_accepted_total"),
            sum("augur_ingest_points_parsed_total"),
            sum("augur_ingest_points_shed_total"),
        );
        let processed = sum("augur_pipeline_points_total");
        let (aggregated, late) =
            (sum("augur_pipeline_aggregated_points_total"), sum("augur_pipeline_late_points_total"));
        let in_flight = sum("augur_router_queue_points") + sum("augur_parquet_buffered_raw_rows");
        let written = sum("augur_parquet_raw_rows_written_total");
        if accepted > 0
            && parsed == accepted + shed
            && processed == accepted
            && aggregated + late == processed
            && written + in_flight == accepted
        {
            break;
        }
        assert!(Instant::now() < deadline, "counters do not balance: processed {processed}\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.terminate(Duration::from_secs(10)).success());
}

#[test]
fn loadgen_fails_clearly_when_nothing_listens() {
    let out = Command::new(augur_binary())
        .args(["loadgen", "--url", "http://127.0.0.1:1", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to 127.0.0.1:1"));
}

#[test]
fn check_config_lists_every_problem() {
    let dir = TempDir::new("config");
    let good = dir.0.join("good.toml");
    let token = "[[auth.tokens]]\nname = \"fleet\"\ntoken = \"fleet-secret-0123456789\"\nscopes = [\"write\"]\n";
    std::fs::write(&good, format!("[router]\npartitions = 4\n[http]\naddr = \"127.0.0.1:9999\"\n{token}")).unwrap();
    let out = Command::new(augur_binary()).args(["check-config"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("partitions = 4"), "{stdout}");
    assert!(stdout.contains("<redacted>") && !stdout.contains("fleet-secret"), "tokens are never shown: {stdout}");

    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, "[model]\nregion-tag = \"\"\n[tcp]\nmax-line-bytes = 1\n").unwrap();
    let out = Command::new(augur_binary()).args(["check-config"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("model.region-tag") && stderr.contains("tcp.max-line-bytes"), "{stderr}");
    assert!(stderr.contains("auth is on and no token is configured"), "{stderr}");

    let unknown = dir.0.join("unknown.toml");
    std::fs::write(&unknown, "[http]\nadress = \"x\"\n").unwrap();
    let out = Command::new(augur_binary()).args(["check-config"]).arg(&unknown).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("adress"));
}

#[test]
fn demo_runs_and_reports_regions_partitions_and_the_injected_failures() {
    let out = Command::new(augur_binary()).args(["demo", "--duration", "1s"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Ingested per region"), "{stdout}");
    assert!(stdout.contains("eu-west-1"), "{stdout}");
    assert!(stdout.contains("Ingested per partition"), "{stdout}");
    assert!(stdout.contains("400 Bad Request"), "{stdout}");
    // The injected failures: every one flagged, the disk and the memory leak forecast too.
    assert!(stdout.contains("flagged 5 of 5"), "{stdout}");
    for failure in ["disk filling", "memory leak"] {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(failure)).unwrap_or_default();
        assert!(line.contains("before, last off by"), "{failure} forecast: {line}");
    }
}

#[test]
fn a_crash_between_write_and_rename_leaves_no_partial_file_and_startup_cleans_up() {
    let body = b"cpu,host=a,region=eu v=1 1700000000000000000\ncpu,host=b,region=eu v=2 1700000000000000000\n";
    // First run: the fault aborts the process right after the first temporary file is synced.
    let server = AugurServer::start_with_env(&[], &[("AUGUR_FAULT", "parquet-before-rename")]);
    let (status, reply) = http(server.http, "POST", "/api/v2/write", body);
    assert_eq!(status, 204, "{reply}");
    let data_dir = server.data_dir.clone();
    let status = server.terminate_keeping_data(Duration::from_secs(20));
    assert!(!status.success(), "the fault must have aborted the flush: {status}");
    let (done, temp) = parquet_files(&data_dir);
    assert!(done.is_empty(), "no file is visible under its final name: {done:?}");
    assert!(!temp.is_empty(), "the crash left its temporary file");

    // Second run on the same data dir: startup removes the temporary file, and the acknowledged
    // points, never checkpointed, come back from the write-ahead log: once each.
    let server = AugurServer::start_in(&data_dir, &[]);
    let (_, temp) = parquet_files(&data_dir);
    assert!(temp.is_empty(), "startup removed {temp:?}");
    assert!(server.terminate(Duration::from_secs(20)).success());
    let (done, temp) = parquet_files(&data_dir);
    assert!(temp.is_empty());
    let raw: Vec<_> = done.into_iter().filter(|p| p.to_string_lossy().contains("/raw/")).collect();
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert_eq!(parquet_rows(&raw), 2, "both points, once");
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn parquet_rows(files: &[std::path::PathBuf]) -> usize {
    files
        .iter()
        .map(|f| {
            let file = std::fs::File::open(f).unwrap();
            parquet::file::reader::FileReader::metadata(
                &parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap(),
            )
            .file_metadata()
            .num_rows() as usize
        })
        .sum()
}

#[test]
fn compact_merges_the_files_of_two_runs_and_refuses_while_a_server_runs() {
    let server = AugurServer::start(&[]);
    let data_dir = server.data_dir.clone();
    let first = b"cpu,host=a,region=eu v=1 1700000000000000000\ncpu,host=b,region=eu v=2 1700000001000000000\n";
    assert_eq!(http(server.http, "POST", "/api/v2/write", first).0, 204);
    assert!(server.terminate_keeping_data(Duration::from_secs(20)).success());

    let server = AugurServer::start_in(&data_dir, &[]);
    let second = b"cpu,host=c,region=eu v=3,extra=1i 1700000002000000000\n";
    assert_eq!(http(server.http, "POST", "/api/v2/write", second).0, 204);
    let busy = Command::new(augur_binary()).args(["compact", "--data-dir"]).arg(&data_dir).output().unwrap();
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another augur process"), "{busy:?}");
    assert!(server.terminate(Duration::from_secs(20)).success());

    let raw = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        parquet_files(dir).0.into_iter().filter(|p| p.to_string_lossy().contains("/raw/")).collect()
    };
    assert_eq!(raw(&data_dir).len(), 2, "one file per run");
    let out = Command::new(augur_binary()).args(["compact", "--data-dir"]).arg(&data_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("compacted"), "{out:?}");
    let after = raw(&data_dir);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(parquet_rows(&after), 3, "every point once");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn tune_measures_each_partition_count_and_recommends_one() {
    let out = Command::new(augur_binary())
        .args(["tune", "--partitions", "2,1", "--duration", "1s", "--hosts", "200", "--batch", "200"])
        .args(["--connections", "1", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("recommended: router.partitions = "), "{stdout}");
    let tuning: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let trials = tuning["trials"].as_array().unwrap();
    assert_eq!(trials.iter().map(|t| t["partitions"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2], "{stdout}");
    for t in trials {
        assert!(t["values_per_s"].as_f64().unwrap() > 0.0 && t["errors"] == 0, "{t}");
        assert!(t["server_cores"].as_f64().unwrap() > 0.0 && t["peak_rss_mib"].as_f64().unwrap() > 0.0, "{t}");
    }
    assert!([1, 2].contains(&tuning["recommended"].as_u64().unwrap()));
}
