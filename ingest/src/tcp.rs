//! The TCP listeners: newline-delimited line protocol, as Telegraf's `socket_writer` sends it,
//! and Graphite plaintext, as carbon takes it (collectd's `write_graphite`, most agents).
//!
//! A connection is never dropped for a bad line: bad lines are counted and logged (at most one log
//! line per connection per 10 s). When a partition is full the connection stops reading
//! until the batch is admitted, so backpressure reaches the sender through TCP flow control.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::auth::Principal;
use crate::config::TcpConfig;
use crate::limits::Limits;
use crate::line_protocol::{LineError, Reason};
use crate::listener::accept_loop;
use crate::point::{now_nanos, Precision};
use crate::protocols::graphite;
use crate::shutdown::Shutdown;
use crate::write::{LinePolicy, ParsedBody, Writer};

/// Least time between two logs of bad lines from one connection.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 << 10;
/// Longest wait between two admission attempts while partitions are full.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// What a TCP listener's lines are.
#[derive(Debug, Clone)]
pub enum Lines {
    /// InfluxDB line protocol.
    LineProtocol,
    /// Graphite plaintext, mapped to points by these templates.
    Graphite(Arc<graphite::Templates>),
}

impl Lines {
    fn protocol(&self) -> &'static str {
        match self {
            Self::LineProtocol => "tcp",
            Self::Graphite(_) => "graphite",
        }
    }
}

/// Serves `lines` on `listener` until `shutdown`, then lets connections finish what they
/// received. TCP carries no credentials: a client is anonymous, rate-limited by its address, and
/// its new series count against the anonymous tenant `""`.
pub async fn serve(
    listener: TcpListener,
    writer: Writer,
    (config, lines): (TcpConfig, Lines),
    limits: Arc<Limits>,
    shutdown: Shutdown,
) {
    let config = Arc::new(config);
    accept_loop(listener, lines.protocol(), config.max_connections, shutdown, |stream, peer, shutdown| {
        let connection = Connection::new(writer.clone(), config.clone(), lines.clone(), limits.clone(), peer);
        async move {
            if let Err(error) = connection.run(stream, shutdown).await {
                debug!(%peer, %error, "TCP connection ended with an error.");
            }
        }
    })
    .await
}

struct Connection {
    writer: Writer,
    config: Arc<TcpConfig>,
    lines: Lines,
    limits: Arc<Limits>,
    principal: Principal,
    peer: String,
    /// Number of the next line to arrive on this connection.
    next_line: usize,
    bad_lines: usize,
    unlogged_bad_lines: usize,
    last_log: Option<Instant>,
}

impl Connection {
    fn new(writer: Writer, config: Arc<TcpConfig>, lines: Lines, limits: Arc<Limits>, peer: SocketAddr) -> Self {
        Self {
            writer,
            config,
            lines,
            limits,
            principal: Principal::anonymous(Some(peer)),
            peer: peer.to_string(),
            next_line: 1,
            bad_lines: 0,
            unlogged_bad_lines: 0,
            last_log: None,
        }
    }

    async fn run(mut self, mut stream: TcpStream, mut shutdown: Shutdown) -> io::Result<()> {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // Inside a line longer than the limit: drop bytes until its newline.
        let mut skipping = false;
        // How much of `buf` is known to hold no newline.
        let mut scanned = 0;
        loop {
            buf.reserve(READ_CHUNK);
            let read = tokio::select! {
                read = tokio::time::timeout(self.config.idle_timeout, stream.read_buf(&mut buf)) => read,
                () = shutdown.wait() => break,
            };
            let n = match read {
                Err(_) => {
                    debug!(peer = %self.peer, "TCP connection idle, closing.");
                    break;
                }
                Ok(result) => result?,
            };
            if n == 0 {
                // The sender closed: a last line without its newline is still a whole line.
                if !buf.is_empty() && !skipping {
                    let rest = buf.split().freeze();
                    if !self.ingest(rest, &shutdown).await {
                        break;
                    }
                }
                break;
            }
            if skipping {
                match memchr::memchr(b'\n', &buf) {
                    Some(end) => {
                        let _ = buf.split_to(end + 1);
                        skipping = false;
                        self.next_line += 1;
                    }
                    None => {
                        buf.clear();
                        continue;
                    }
                }
            }
            // Only the bytes after `scanned` can hold a newline not seen yet: a line dribbling in
            // a byte at a time costs linear, not quadratic, scanning.
            match memchr::memrchr(b'\n', &buf[scanned..]) {
                Some(last) => {
                    let complete = buf.split_to(scanned + last + 1).freeze();
                    scanned = 0;
                    if !self.ingest(complete, &shutdown).await {
                        break;
                    }
                }
                None => scanned = buf.len(),
            }
            if buf.len() > self.config.max_line_bytes {
                let error = LineError {
                    line: self.next_line,
                    column: self.config.max_line_bytes + 1,
                    reason: Reason::LineTooLong(self.config.max_line_bytes),
                };
                self.writer.stats().lines_invalid.fetch_add(1, Ordering::Relaxed);
                self.report(1, Some(error.to_string()));
                buf.clear();
                scanned = 0;
                skipping = true;
            }
        }
        if self.bad_lines > 0 {
            debug!(peer = %self.peer, bad_lines = self.bad_lines, "TCP connection closed.");
        }
        Ok(())
    }

    /// Parses and stores complete lines, waiting while partitions or the log are full. `false`
    /// when the engine is shutting down (or the log stopped) and nothing more can be taken: lines
    /// that wait at shutdown are dropped (TCP has no acknowledgement to take back).
    async fn ingest(&mut self, lines: bytes::Bytes, shutdown: &Shutdown) -> bool {
        // Over the rate, stop reading until the debt is paid: TCP flow control slows the sender.
        while let Err(limited) = self.limits.rate.check(self.principal.rate_key(), None) {
            let mut shutdown = shutdown.clone();
            tokio::select! {
                () = tokio::time::sleep(limited.wait) => {}
                () = shutdown.wait() => return false,
            }
        }
        let now = now_nanos();
        let first_line = self.next_line;
        let (mut parsed, last_line, first_error) = self.parse(lines.clone(), now, first_line).await;
        self.next_line = last_line + 1;
        if let Some(first) = first_error {
            self.report(parsed.error_count, Some(first));
        }
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.writer.store(&mut parsed).await {
                Ok(()) => {
                    self.limits.rate.charge(self.principal.rate_key(), None, parsed.points);
                    return true;
                }
                Err(error) if error.is_retryable() && !shutdown.is_triggered() => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if parsed.batches.is_empty() {
                        // The log refused the request and took its batches: parse it again.
                        parsed = self.parse(lines.clone(), now, first_line).await.0;
                    }
                }
                Err(_) => {
                    self.writer.shed(&parsed);
                    return false;
                }
            }
        }
    }

    /// Parses complete lines numbered from `first_line`: the points, the number of the last line,
    /// and the first error (if any) naming its line.
    async fn parse(&self, lines: bytes::Bytes, now: i64, first_line: usize) -> (ParsedBody, usize, Option<String>) {
        let (writer, max_line_bytes, format) = (self.writer.clone(), self.config.max_line_bytes, self.lines.clone());
        let tenant = self.limits.series.as_ref().map(|budget| budget.tenant(&self.principal.tenant));
        self.writer
            .run_cpu(move || {
                let policy = tenant.as_deref().map_or(LinePolicy::All, LinePolicy::Tenant);
                match format {
                    Lines::LineProtocol => {
                        let parsed =
                            writer.parse(&lines, Precision::Nanoseconds, now, (first_line, max_line_bytes), policy);
                        let (last, first) = (parsed.last_line, parsed.errors.first().map(ToString::to_string));
                        (parsed, last, first)
                    }
                    Lines::Graphite(templates) => {
                        let converted = graphite::decode(&lines, &templates, first_line, now);
                        writer.stats().lines_invalid.fetch_add(converted.error_count as u64, Ordering::Relaxed);
                        let mut parsed =
                            writer.parse(&converted.lines, Precision::Nanoseconds, now, (1, usize::MAX), policy);
                        let first = converted
                            .errors
                            .first()
                            .cloned()
                            .or_else(|| parsed.errors.first().map(|e| converted.describe(e.line, &e.reason)));
                        parsed.error_count += converted.error_count;
                        // Every line of the chunk is counted, so numbers go on across reads.
                        let count = memchr::memchr_iter(b'\n', &lines).count() + usize::from(!lines.ends_with(b"\n"));
                        let last = first_line + count.max(1) - 1;
                        (parsed, last, first)
                    }
                }
            })
            .await
    }

    /// Counts bad lines and logs them, at most once per [`LOG_EVERY`].
    fn report(&mut self, count: usize, first: Option<String>) {
        self.bad_lines += count;
        self.unlogged_bad_lines += count;
        if self.last_log.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        self.last_log = Some(Instant::now());
        let (protocol, first) = (self.lines.protocol(), first.unwrap_or_default());
        warn!(peer = %self.peer, protocol, bad_lines = self.unlogged_bad_lines, %first, "Bad lines on TCP.");
        self.unlogged_bad_lines = 0;
    }
}
