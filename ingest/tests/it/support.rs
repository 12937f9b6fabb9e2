//! A real ingest server on loopback port 0, and a plain HTTP/1.1 client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use augur_ingest::auth::Auth;
use augur_ingest::config::{AuthConfig, HttpConfig, LimitsConfig, ModelConfig, OtlpConfig, TcpConfig};
use augur_ingest::http::HttpState;
use augur_ingest::limits::Limits;
use augur_ingest::shutdown::{shutdown_channel, ShutdownTrigger};
use augur_ingest::{PartitionReceiver, Point, Router, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct Server {
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) receivers: Vec<PartitionReceiver>,
    pub(crate) writer: Writer,
    _trigger: ShutdownTrigger,
}

pub(crate) struct Options {
    pub(crate) partitions: usize,
    pub(crate) capacity: usize,
    pub(crate) http: HttpConfig,
    pub(crate) tcp: TcpConfig,
    pub(crate) auth: AuthConfig,
    pub(crate) limits: LimitsConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            partitions: 3,
            capacity: 64 << 20,
            http: HttpConfig::default(),
            tcp: TcpConfig::default(),
            auth: AuthConfig { enabled: false, tokens: Vec::new() },
            limits: LimitsConfig::default(),
        }
    }
}

impl Server {
    pub(crate) async fn start(options: Options) -> Self {
        let (router, receivers) = Router::new(options.partitions, options.capacity);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let writer = Writer::new(Arc::new(router), &ModelConfig::default(), Arc::new(pool));
        let (trigger, shutdown) = shutdown_channel();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (http_addr, tcp_addr) = (http.local_addr().unwrap(), tcp.local_addr().unwrap());
        let limits = Arc::new(Limits::new(&options.limits));
        let auth = Arc::new(Auth::new(&options.auth));
        let state = HttpState::new(&writer, options.http.clone(), OtlpConfig::default(), auth, limits.clone());
        let app = augur_ingest::http::routes(state);
        let http_config = options.http;
        let http_shutdown = shutdown.clone();
        tokio::spawn(async move { augur_ingest::http::serve(http, app, &http_config, None, http_shutdown).await });
        tokio::spawn(augur_ingest::tcp::serve(
            tcp,
            writer.clone(),
            (options.tcp, augur_ingest::tcp::Lines::LineProtocol),
            limits,
            shutdown,
        ));
        Self { http: http_addr, tcp: tcp_addr, receivers, writer, _trigger: trigger }
    }

    /// Every point queued in any partition now, taken out of the queues.
    pub(crate) fn drain(&self) -> Vec<Point> {
        let mut points = Vec::new();
        for receiver in &self.receivers {
            while let Some(batch) = receiver.try_recv() {
                points.extend(batch.iter().map(|p| p.to_point()));
            }
        }
        points.sort_by_key(|p| p.time);
        points
    }

    /// Waits until `n` points were admitted (TCP has no acknowledgement to wait for).
    pub(crate) async fn wait_for_points(&self, n: u64) {
        let accepted = &self.writer.stats().points_accepted;
        for _ in 0..500 {
            if accepted.load(std::sync::atomic::Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} of {n} points arrived", accepted.load(std::sync::atomic::Ordering::SeqCst));
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request on a fresh connection (`Connection: close`), the body sent with Content-Length.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body).await;
    read_response(&mut stream).await
}

async fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw)).await;
    parse_response(&raw)
}

pub(crate) fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    Response { status, headers, body: body.to_owned() }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
