//! Abuse beside a legitimate client: wrong tokens, tokens of another scope, oversize headers, a
//! tenant 10× over its rate and 10,000 concurrent slow connections, all at once, against the real
//! binary. Each abuser gets its status (or its disconnection) quickly; the legitimate client's
//! writes all succeed. Its throughput with and without the abuse is printed: the ratio is a
//! measurement (docs/performance.md), taken by hand with longer phases:
//!
//!   AUGUR_ABUSE_SECONDS=20 cargo nextest run -p augur-suite --test abuse --no-capture

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use augur_suite::{augur_binary, AugurServer, TempDir};

const WRITER: &str = "writer-secret-0123456789";
const READER: &str = "reader-secret-0123456789";
const NOISY: &str = "noisy-secret-01234567890";
const SLOW_CONNECTIONS: usize = 10_000;
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

const CONFIG: &str = r#"
[http]
max-connections = 12000
header-read-timeout = "3s"

[[auth.tokens]]
name = "fleet"
token = "writer-secret-0123456789"
scopes = ["write"]

[[auth.tokens]]
name = "dashboards"
token = "reader-secret-0123456789"
scopes = ["read"]

[[auth.tokens]]
name = "noisy"
token = "noisy-secret-01234567890"
scopes = ["write"]
points-per-second = 5000
burst-points = 5000
"#;

/// Statuses an abuser got and its slowest answer.
#[derive(Debug, Default)]
struct Seen {
    statuses: Vec<u16>,
    slowest: Duration,
}

/// One request on a fresh connection: its status (0 when the connection failed).
fn post(addr: SocketAddr, headers: &str, body: &[u8]) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else { return 0 };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST /api/v2/write HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    // A server refusing the head may close before reading all of it: read its answer anyway.
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends `body` with `headers` every `every` until `stop`, recording each status.
fn abuser(addr: SocketAddr, headers: String, body: Vec<u8>, every: Duration, stop: &AtomicBool, seen: &Mutex<Seen>) {
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let status = post(addr, &headers, &body);
        let mut seen = seen.lock().unwrap();
        seen.statuses.push(status);
        // Refusals must be quick; a write that is stored (204) waits for room like every
        // client's while the partitions are full (backpressure, `http.admission-wait`).
        if status != 204 {
            seen.slowest = seen.slowest.max(sent.elapsed());
        }
        drop(seen);
        std::thread::sleep(every.saturating_sub(sent.elapsed()));
    }
}

/// Holds up to [`SLOW_CONNECTIONS`] connections that send a request head one byte per second,
/// reopening those the server cut off, until `stop`. Returns (most open at once, connections
/// cut off, the longest any lived before it was cut off).
fn slow_connections(addr: SocketAddr, stop: &AtomicBool) -> (usize, usize, Duration) {
    let mut open: Vec<(TcpStream, Instant)> = Vec::new();
    let (mut most, mut cut, mut longest) = (0, 0, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        // Top up to the full count every second: the server cuts each off after its header timeout.
        for _ in open.len()..SLOW_CONNECTIONS {
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    let _ = stream.set_nonblocking(true);
                    open.push((stream, Instant::now()));
                }
                Err(_) => break,
            }
        }
        most = most.max(open.len());
        let round = Instant::now();
        open.retain_mut(|(stream, since)| {
            let mut buf = [0u8; 512];
            let closed = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            } || stream.write(b"P").is_err();
            if closed {
                cut += 1;
                longest = longest.max(since.elapsed());
            }
            !closed
        });
        std::thread::sleep(Duration::from_secs(1).saturating_sub(round.elapsed()));
    }
    (most, cut, longest)
}

/// CPU seconds this process (the abusers) has used: utime + stime from /proc/self/stat.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `augur loadgen` as the legitimate client: its JSON report.
fn legitimate_load(url: &str, seconds: u64) -> serde_json::Value {
    let out = Command::new(augur_binary())
        .args(["loadgen", "--url", url, "--hosts", "10000", "--fields", "8", "--batch", "1000"])
        .args(["--connections", "2", "--token", WRITER, "--json", "--duration", &format!("{seconds}s")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn abusers_get_their_answers_quickly_and_the_legitimate_client_keeps_writing() {
    let seconds: u64 = std::env::var("AUGUR_ABUSE_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let dir = TempDir::new("abuse");
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server =
        AugurServer::start_with_env(&["--config", config.to_str().unwrap()], &[("AUGUR_AUTH__ENABLED", "true")]);
    let (addr, url) = (server.http, format!("http://{}", server.http));

    let alone = legitimate_load(&url, seconds);

    let stop = Arc::new(AtomicBool::new(false));
    let (cpu_before, abuse_started) = (own_cpu_seconds(), Instant::now());
    let seen: Vec<Arc<Mutex<Seen>>> = (0..4).map(|_| Arc::default()).collect();
    let lines: Vec<u8> = (0..1000).flat_map(|i| format!("cpu,host=noisy{i} v=1\n").into_bytes()).collect();
    let attacks = [
        ("Authorization: Token guessed-token-0000000000\r\n".to_owned(), b"cpu v=1".to_vec(), 10),
        (format!("Authorization: Token {READER}\r\n"), b"cpu v=1".to_vec(), 20),
        (format!("Authorization: Token {WRITER}\r\nX-Padding: {}\r\n", "x".repeat(100 << 10)), b"cpu v=1".to_vec(), 50),
        // 1000 points every 20 ms: 50,000 points/s, ten times the token's 5,000.
        (format!("Authorization: Token {NOISY}\r\n"), lines, 20),
    ];
    let (slow, legit) = std::thread::scope(|scope| {
        for ((headers, body, every_ms), seen) in attacks.into_iter().zip(&seen) {
            let stop = stop.clone();
            scope.spawn(move || abuser(addr, headers, body, Duration::from_millis(every_ms), &stop, seen));
        }
        let slow = scope.spawn(|| slow_connections(addr, &stop));
        // Let the slow connections pile up first: the legitimate client connects beside them.
        std::thread::sleep(Duration::from_secs(2));
        let legit = legitimate_load(&url, seconds);
        std::thread::sleep(HEADER_TIMEOUT.saturating_sub(Duration::from_secs(seconds)));
        stop.store(true, Ordering::Relaxed);
        (slow.join().unwrap(), legit)
    });

    let abuse_seconds = abuse_started.elapsed().as_secs_f64();
    let abuser_cores = (own_cpu_seconds() - cpu_before) / abuse_seconds;
    let ratio = legit["values_per_s"].as_f64().unwrap() / alone["values_per_s"].as_f64().unwrap();
    println!(
        "legitimate client: alone {:.0} values/s (p99 {} ms), under abuse {:.0} values/s (p99 {} ms): {:.0}%; the abusers themselves used {abuser_cores:.2} of the machine's cores",
        alone["values_per_s"].as_f64().unwrap(),
        alone["p99_ms"],
        legit["values_per_s"].as_f64().unwrap(),
        legit["p99_ms"],
        ratio * 100.0
    );
    assert_eq!(legit["errors"], 0, "the legitimate client was refused: {legit}");
    assert!(legit["points_total"].as_u64().unwrap() > 0, "{legit}");

    let expected = [("wrong token", 401), ("wrong scope", 403), ("oversize header", 431), ("over its rate", 429)];
    for ((what, status), seen) in expected.into_iter().zip(&seen) {
        let seen = seen.lock().unwrap();
        println!("{what}: {} requests, slowest refusal {:?}", seen.statuses.len(), seen.slowest);
        assert!(seen.statuses.iter().filter(|&&s| s == status).count() > 0, "{what}: {:?}", seen.statuses);
        let others: Vec<u16> =
            seen.statuses.iter().copied().filter(|&s| s != status && !(status == 429 && s == 204)).collect();
        assert!(others.is_empty(), "{what}: expected {status}, also got {others:?}");
        // Answered, not held: the status checks above say each refusal was the right answer; this
        // only says none waited for the client's 10-s read timeout. Not a latency bound (a 2-s one
        // failed at 2.4 s on a loaded 2-core run): refusal latency is printed above.
        assert!(seen.slowest < Duration::from_secs(8), "{what}: a refusal took {:?}", seen.slowest);
    }
    let noisy = seen[3].lock().unwrap();
    // The token's bucket: its burst, its rate over the abuse, and the one request it may owe (a
    // request is let in while the balance is positive, then charged). Not a share of requests:
    // how many the client manages to send depends on how loaded the machine is.
    let stored_points = 1000.0 * noisy.statuses.iter().filter(|&&s| s == 204).count() as f64;
    let allowed = 5000.0 + 5000.0 * abuse_seconds + 1000.0;
    assert!(
        stored_points <= allowed,
        "the noisy tenant stored {stored_points} points in {abuse_seconds:.1} s; its bucket allows {allowed}"
    );

    let (most, cut, longest) = slow;
    println!("slow connections: {most} open at once, {cut} cut off, the longest lived {longest:?}");
    assert!(most >= SLOW_CONNECTIONS * 9 / 10, "only {most} slow connections were held");
    assert!(cut >= SLOW_CONNECTIONS / 2, "slow connections were not cut off: {cut}");
    assert!(longest < HEADER_TIMEOUT + Duration::from_secs(3), "a slow connection lived {longest:?}");
    assert!(server.terminate(Duration::from_secs(60)).success());
}
