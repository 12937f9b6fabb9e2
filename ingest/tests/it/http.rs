//! The HTTP write API against a real listener.

use std::time::{Duration, Instant};

use augur_ingest::config::HttpConfig;
use augur_ingest::FieldValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{gzip, parse_response, request, Options, Server};

const V2: &str = "/api/v2/write?org=o&bucket=b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_write_stores_points_with_their_values() {
    let server = Server::start(Options::default()).await;
    let body = "cpu,host=a,region=eu usage=1.5,count=3i,up=true,note=\"ok\" 1000\ncpu,host=b usage=2 2000\n";
    let reply = request(server.http, "POST", V2, &[], body.as_bytes()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let points = server.drain();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0].fields[1], ("count".into(), FieldValue::Integer(3)));
    assert_eq!(points[0].fields[3], ("note".into(), FieldValue::String("ok".into())));
    assert_eq!((points[0].time, points[1].time), (1000, 2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precision_parameters_of_v1_and_v2() {
    let server = Server::start(Options::default()).await;
    let reply = request(server.http, "POST", "/write?db=x&precision=h", &[], b"m v=1 2").await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = request(server.http, "POST", &format!("{V2}&precision=ms"), &[], b"m v=1 3").await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let times: Vec<i64> = server.drain().iter().map(|p| p.time).collect();
    assert_eq!(times, vec![3_000_000, 7_200_000_000_000]);

    let reply = request(server.http, "POST", &format!("{V2}&precision=h"), &[], b"m v=1 3").await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["message"].as_str().unwrap().contains("ns, us, ms, s"), "{}", reply.body);
    // InfluxDB 1.x's documentation spells nanoseconds `ns`, its handler also takes `n`; `us` is
    // v2's spelling, which 1.x would silently read as nanoseconds: refused, naming `u`.
    let reply = request(server.http, "POST", "/write?precision=ns", &[], b"m v=1 3").await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(server.drain().iter().map(|p| p.time).collect::<Vec<_>>(), vec![3]);
    let reply = request(server.http, "POST", "/write?precision=us", &[], b"m v=1 3").await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["message"].as_str().unwrap().contains("use u"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_timestamps_get_the_receive_time() {
    let server = Server::start(Options::default()).await;
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert_eq!(request(server.http, "POST", V2, &[], b"m v=1\nm v=2").await.status, 204);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    let points = server.drain();
    assert_eq!(points.len(), 2);
    assert!(points.iter().all(|p| (before..=after).contains(&p.time)));
    assert_eq!(points[0].time, points[1].time, "one receive time per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_accepted_and_truncated_ones_named() {
    let server = Server::start(Options::default()).await;
    let body: String = (0..1000).map(|i| format!("m,host=h{i} v={i} {i}\n")).collect();
    let compressed = gzip(body.as_bytes());
    let reply = request(server.http, "POST", V2, &[("Content-Encoding", "gzip")], &compressed).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(server.drain().len(), 1000);

    let truncated = &compressed[..compressed.len() / 2];
    let reply = request(server.http, "POST", V2, &[("Content-Encoding", "gzip")], truncated).await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["message"].as_str().unwrap().contains("invalid gzip body"), "{}", reply.body);
    assert!(server.drain().is_empty(), "nothing of a truncated body is stored");

    let reply = request(server.http, "POST", V2, &[("Content-Encoding", "br")], b"m v=1").await;
    assert_eq!(reply.status, 415);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_named_and_good_lines_kept() {
    let server = Server::start(Options::default()).await;
    let body = "m v=1 1\nm v=oops 2\nm v=3 3\nm,t= v=4 4\n";
    let reply = request(server.http, "POST", V2, &[], body.as_bytes()).await;
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(json["code"], "invalid");
    assert_eq!(json["accepted_points"], 2);
    assert_eq!(json["rejected_lines"], 2);
    assert_eq!(json["errors"][0]["line"], 2);
    assert_eq!(json["errors"][0]["column"], 5);
    assert_eq!(json["errors"][1]["line"], 4);
    assert_eq!(json["errors"][1]["reason"], "empty tag value");
    let times: Vec<i64> = server.drain().iter().map(|p| p.time).collect();
    assert_eq!(times, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_first_hundred_bad_lines_are_listed() {
    let server = Server::start(Options::default()).await;
    let body = "m v=x\n".repeat(250);
    let json = request(server.http, "POST", V2, &[], body.as_bytes()).await.json();
    assert_eq!(json["rejected_lines"], 250);
    assert_eq!(json["errors"].as_array().unwrap().len(), 100);
}

fn small_limits() -> Options {
    Options {
        http: HttpConfig {
            max_body_bytes: 64 << 10,
            max_inflight_bytes: 1 << 20,
            body_read_timeout: Duration::from_millis(500),
            header_read_timeout: Duration::from_millis(500),
            ..HttpConfig::default()
        },
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    let server = Server::start(small_limits()).await;
    // A declared 1 GB body is refused before a byte of it is read.
    let started = Instant::now();
    let reply = request(server.http, "POST", V2, &[("Content-Length", "1000000000")], b"").await;
    assert_eq!(reply.status, 413);
    assert!(reply.json()["message"].as_str().unwrap().contains("65536"), "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A chunked body that grows past the limit is cut off at the limit.
    let mut stream = TcpStream::connect(server.http).await.unwrap();
    let head = format!("POST {V2} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "m v=1\n".repeat(1000);
    for _ in 0..20 {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if stream.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    assert_eq!(parse_response(&raw).status, 413);

    // A gzip bomb: 32 KiB compressed, 32 MiB inflated. Refused at the inflated limit.
    let bomb = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b'a'; 32 << 20]).unwrap();
        encoder.finish().unwrap()
    };
    assert!(bomb.len() < 64 << 10, "bomb is {} bytes", bomb.len());
    let reply = request(server.http, "POST", V2, &[("Content-Encoding", "gzip")], &bomb).await;
    assert_eq!(reply.status, 413);
    assert!(reply.json()["message"].as_str().unwrap().contains("after decompression"), "{}", reply.body);
    assert!(server.drain().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_and_routing_errors_are_json() {
    let server = Server::start(Options::default()).await;
    for accepted in ["text/plain; charset=utf-8", "application/octet-stream", "application/x-www-form-urlencoded"] {
        let reply = request(server.http, "POST", V2, &[("Content-Type", accepted)], b"m v=1").await;
        assert_eq!(reply.status, 204, "{accepted}");
    }
    let reply = request(server.http, "POST", V2, &[("Content-Type", "application/json")], b"{}").await;
    assert_eq!(reply.status, 415);
    assert!(reply.json()["message"].as_str().unwrap().contains("application/json"));

    let reply = request(server.http, "POST", "/nope", &[], b"").await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (404, Some("not found")));
    let reply = request(server.http, "GET", "/write", &[], b"").await;
    assert_eq!((reply.status, reply.json()["code"].as_str()), (405, Some("method not allowed")));
    assert_eq!(request(server.http, "GET", "/ping", &[], b"").await.status, 204);
    assert_eq!(request(server.http, "GET", "/health", &[], b"").await.json()["status"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_partition_gets_503_and_nothing_of_the_request_is_enqueued() {
    // Nobody drains the partitions in this test, so they fill up.
    let server = Server::start(Options { partitions: 2, capacity: 1 << 20, ..Options::default() }).await;
    let mut accepted = 0;
    let mut refused = None;
    for request_no in 0..200 {
        let body: String = (0..2000).map(|i| format!("m,host=h{i} v={request_no} {i}\n")).collect();
        let reply = request(server.http, "POST", V2, &[], body.as_bytes()).await;
        match reply.status {
            204 => accepted += 2000,
            503 => {
                refused = Some(reply);
                break;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let refused = refused.expect("partitions never filled up");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    assert!(refused.json()["message"].as_str().unwrap().contains("nothing of this request was stored"));
    assert_eq!(server.drain().len(), accepted, "exactly the acknowledged points were enqueued");
    // Drained, the partitions take writes again.
    let reply = request(server.http, "POST", V2, &[], b"m v=1").await;
    assert_eq!(reply.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let server = Server::start(small_limits()).await;
    // A body dribbling in a byte at a time runs into the body timeout.
    let mut stream = TcpStream::connect(server.http).await.unwrap();
    let head = format!("POST {V2} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if stream.write_all(b"m").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the slow body was never cut off");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut raw)).await;
    assert_eq!(parse_response(&raw).status, 408);

    // Headers dribbling in are cut off by the header timeout: the connection closes.
    let mut stream = TcpStream::connect(server.http).await.unwrap();
    let started = Instant::now();
    let closed = loop {
        if stream.write_all(b"P").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            _ if started.elapsed() > Duration::from_secs(10) => break false,
            _ => {}
        }
    };
    assert!(closed, "a client sending headers a byte at a time was never disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_far_in_the_future_are_rejected_by_line() {
    let server = Server::start(Options::default()).await;
    let now = augur_ingest::point::now_nanos();
    let body = format!("m v=1 {}\nm v=2 {}\n", now + 60_000_000_000, now + 3_600_000_000_000);
    let reply = request(server.http, "POST", V2, &[], body.as_bytes()).await;
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(json["errors"][0]["line"], 2);
    assert_eq!(json["errors"][0]["column"], 7);
    assert!(json["errors"][0]["reason"].as_str().unwrap().contains("more than 10m ahead"), "{}", reply.body);
    assert_eq!(server.drain().len(), 1, "a minute ahead is within the allowance");
}
