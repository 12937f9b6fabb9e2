//! The TCP listener: newline-delimited line protocol, as Telegraf's `socket_writer` sends it.
//!
//! A connection is never dropped for a bad line: bad lines are counted and logged (at most one log
//! line per connection per 10 s). When a partition is full the connection stops reading
//! until the batch is admitted, so backpressure reaches the sender through TCP flow control.

use std::io;
use std::net::SocketAddr;
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
use crate::shutdown::Shutdown;
use crate::write::{LinePolicy, ParsedBody, Writer};

/// Least time between two logs of bad lines from one connection.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 << 10;
/// Longest wait between two admission attempts while partitions are full.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Serves line protocol on `listener` until `shutdown`, then lets connections finish what they
/// received. TCP carries no credentials: a client is anonymous, rate-limited by its address, and
/// its new series count against the anonymous tenant `""`.
pub async fn serve(listener: TcpListener, writer: Writer, config: TcpConfig, limits: Arc<Limits>, shutdown: Shutdown) {
    let config = Arc::new(config);
    accept_loop(listener, "tcp", config.max_connections, shutdown, |stream, peer, shutdown| {
        let connection = Connection::new(writer.clone(), config.clone(), limits.clone(), peer);
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
    fn new(writer: Writer, config: Arc<TcpConfig>, limits: Arc<Limits>, peer: SocketAddr) -> Self {
        Self {
            writer,
            config,
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
                self.writer.stats().lines_invalid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.report(1, Some(&error));
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
        let mut parsed = self.parse(lines.clone(), now, first_line).await;
        self.next_line = parsed.last_line + 1;
        if parsed.error_count > 0 {
            self.report(parsed.error_count, parsed.errors.first());
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
                        parsed = self.parse(lines.clone(), now, first_line).await;
                    }
                }
                Err(_) => {
                    self.writer.shed(&parsed);
                    return false;
                }
            }
        }
    }

    async fn parse(&self, lines: bytes::Bytes, now: i64, first_line: usize) -> ParsedBody {
        let (writer, max_line_bytes) = (self.writer.clone(), self.config.max_line_bytes);
        let tenant = self.limits.series.as_ref().map(|budget| budget.tenant(&self.principal.tenant));
        self.writer
            .run_cpu(move || {
                let policy = tenant.as_deref().map_or(LinePolicy::All, LinePolicy::Tenant);
                writer.parse(&lines, Precision::Nanoseconds, now, (first_line, max_line_bytes), policy)
            })
            .await
    }

    /// Counts bad lines and logs them, at most once per [`LOG_EVERY`].
    fn report(&mut self, count: usize, first: Option<&LineError>) {
        self.bad_lines += count;
        self.unlogged_bad_lines += count;
        if self.last_log.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        self.last_log = Some(Instant::now());
        let first = first.map(ToString::to_string).unwrap_or_default();
        warn!(peer = %self.peer, bad_lines = self.unlogged_bad_lines, %first, "Bad line protocol on TCP.");
        self.unlogged_bad_lines = 0;
    }
}
