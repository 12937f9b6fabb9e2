//! A full disk and a read-only data dir: clients and logs are told (503 naming the cause, a clear
//! start error), the server neither crashes nor loops, and no acknowledged point is lost.
//!
//! The data dir is a small tmpfs the test mounts, so these tests need root (CI runs as root).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use augur_suite::{augur_binary, http, raw_points_by_id, try_write, AugurServer, TempDir};

const CONFIG: &str = r#"
[wal]
segment-bytes = 1048576
checkpoint-interval = "200ms"

[parquet]
max-age = "200ms"
"#;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&path).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot mount a tmpfs at {}: these tests need root and the mount command (util-linux)",
            path.display()
        );
        Self(path)
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount").args(["-o", &format!("remount,{options}")]).arg(&self.0).status().unwrap();
        assert!(status.success(), "mount -o remount,{options} {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes requests of fresh points (ids from `next_id`) until `until` says stop or `limit`
/// passes; returns the ids acknowledged and the last answer.
fn write_until(
    addr: SocketAddr,
    next_id: &mut i64,
    acked: &mut HashSet<i64>,
    limit: Duration,
    mut until: impl FnMut(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let now = augur_storage::now_nanos();
        let mut body = String::new();
        let ids: Vec<i64> = (0..500).map(|_| std::mem::replace(next_id, *next_id + 1)).collect();
        for &id in &ids {
            // Values that compress poorly, so the disk fills in seconds.
            let noise = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            body.push_str(&format!("disk,host=h{},region=eu id={id}i,v={noise} {}\n", id % 50, now + id % 1000));
        }
        let (status, reply) = try_write(addr, body.as_bytes()).expect("the server answers");
        if status == 204 {
            acked.extend(ids);
        }
        if until(status, &reply) {
            return (status, reply);
        }
        assert!(Instant::now() < deadline, "no matching answer within {limit:?}; last: {status} {reply}");
    }
}

fn config(dir: &Path) -> String {
    let path = dir.join("augur.toml");
    std::fs::write(&path, CONFIG).unwrap();
    path.to_str().unwrap().to_owned()
}

fn assert_all_stored(data: &Path, acked: &HashSet<i64>) {
    let raw = raw_points_by_id(data, "disk");
    let missing: Vec<&i64> = acked.iter().filter(|id| !raw.contains_key(id)).take(10).collect();
    assert!(missing.is_empty(), "{} acknowledged points, missing e.g. {missing:?}", acked.len());
}

#[test]
fn a_full_disk_gets_503s_naming_it_and_loses_nothing_acknowledged() {
    let dir = TempDir::new("disk-full");
    let config = config(&dir.0);
    let disk = Tmpfs::mount(dir.0.join("data"), "12m");
    let (mut next_id, mut acked) = (0, HashSet::new());

    let server = AugurServer::start_in(&disk.0, &["--config", &config]);
    let (_, reply) =
        write_until(server.http, &mut next_id, &mut acked, Duration::from_secs(120), |status, _| status == 503);
    assert!(reply.contains("No space left on device"), "the 503 names the cause: {reply}");
    assert!(!acked.is_empty(), "writes were acknowledged before the disk filled");
    // Still serving. "Full" is not a steady state: a refused append is cut off the log and a
    // failed Parquet file removed, so a later request may fit and be acknowledged (it is then
    // checked like any other below). Every answer is one or the other, never a crash or a 500.
    assert_eq!(http(server.http, "GET", "/health", b"").0, 200);
    let mut answers = 0;
    write_until(server.http, &mut next_id, &mut acked, Duration::from_secs(30), |status, reply| {
        assert!(
            status == 204 || (status == 503 && reply.contains("No space left on device")),
            "while the disk is full: {status} {reply}"
        );
        answers += 1;
        answers == 20
    });

    // Room again: the pending checkpoint completes, the log frees segments, writes succeed.
    disk.remount("size=512m");
    write_until(server.http, &mut next_id, &mut acked, Duration::from_secs(60), |status, _| status == 204);
    write_until(server.http, &mut next_id, &mut acked, Duration::from_secs(60), |status, _| status == 204);
    assert!(server.terminate(Duration::from_secs(60)).success(), "a clean stop after the disk was full");
    assert_all_stored(&disk.0, &acked);
}

#[test]
fn a_read_only_data_dir_is_a_clear_start_error_and_keeps_what_was_stored() {
    let dir = TempDir::new("disk-ro");
    let config = config(&dir.0);
    let disk = Tmpfs::mount(dir.0.join("data"), "64m");
    let (mut next_id, mut acked) = (0, HashSet::new());
    let server = AugurServer::start_in(&disk.0, &["--config", &config]);
    let mut requests = 0;
    write_until(server.http, &mut next_id, &mut acked, Duration::from_secs(30), |_, _| {
        requests += 1;
        requests == 10
    });
    assert!(server.terminate(Duration::from_secs(60)).success());

    disk.remount("ro");
    let output = Command::new(augur_binary())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--config", &config, "--data-dir"])
        .arg(&disk.0)
        .env("AUGUR_AUTH__ENABLED", "false")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "augur must refuse a read-only data dir");
    assert!(
        stderr.contains("Read-only file system") && stderr.contains(&*disk.0.to_string_lossy()),
        "the error names the data dir and the cause: {stderr}"
    );

    disk.remount("rw");
    let server = AugurServer::start_in(&disk.0, &["--config", &config]);
    assert!(server.terminate(Duration::from_secs(60)).success());
    assert_all_stored(&disk.0, &acked);
}
