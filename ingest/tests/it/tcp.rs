//! The TCP line-protocol listener against real sockets.

use std::time::Duration;

use augur_ingest::config::TcpConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Options, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_lines_are_buffered_and_bad_lines_do_not_drop_the_connection() {
    let server = Server::start(Options::default()).await;
    let mut stream = TcpStream::connect(server.tcp).await.unwrap();
    stream.write_all(b"cpu,host=a v=1 1\ncpu,ho").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"st=b v=2 2\nthis is not line protocol\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"cpu,host=c v=3 3\ncpu,host=d v=4 4").await.unwrap();
    stream.shutdown().await.unwrap(); // the last line has no newline: closing completes it
    server.wait_for_points(4).await;
    let points = server.drain();
    let hosts: Vec<&str> = points.iter().map(|p| p.tags[0].1.as_str()).collect();
    assert_eq!(hosts, vec!["a", "b", "c", "d"]);
    assert_eq!(server.writer.stats().lines_invalid.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_line_is_skipped_and_the_stream_goes_on() {
    let server = Server::start(Options {
        tcp: TcpConfig { max_line_bytes: 1024, ..TcpConfig::default() },
        ..Options::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.tcp).await.unwrap();
    let long = format!("m,t={} v=1 1\n", "x".repeat(100_000));
    stream.write_all(b"m v=0 0\n").await.unwrap();
    stream.write_all(long.as_bytes()).await.unwrap();
    stream.write_all(b"m v=2 2\n").await.unwrap();
    server.wait_for_points(2).await;
    let times: Vec<i64> = server.drain().iter().map(|p| p.time).collect();
    assert_eq!(times, vec![0, 2]);
    assert_eq!(server.writer.stats().lines_invalid.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_are_shed_and_service_resumes() {
    let server = Server::start(Options {
        tcp: TcpConfig { max_connections: 100, idle_timeout: Duration::from_millis(500), ..TcpConfig::default() },
        ..Options::default()
    })
    .await;
    let mut idle = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        match TcpStream::connect(server.tcp).await {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connect failed after {} connections: {e} (raise `ulimit -n`)", idle.len()),
        }
    }
    // Past the cap, connections are closed at once; the rest by the idle timeout. None stays open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut open = 0;
    let mut buf = [0u8; 1];
    for stream in &mut idle {
        if let Err(_) | Ok(Ok(1..)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} idle connections were still open");
    drop(idle);
    let mut stream = TcpStream::connect(server.tcp).await.unwrap();
    stream.write_all(b"m v=1 1\n").await.unwrap();
    server.wait_for_points(1).await;
}
