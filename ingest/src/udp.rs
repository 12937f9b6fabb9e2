//! The UDP listener: StatsD datagrams, aggregated on a thread of their own and stored as points
//! at every flush interval.
//!
//! Aggregating is per-metric work, so it runs on a dedicated thread, never on a tokio worker; only
//! the store at each flush waits on the runtime. UDP has no acknowledgement and no backpressure:
//! while a flush waits on a full partition, datagrams queue in the socket's buffer, and the kernel
//! drops them when it is full (counted by the kernel, as for any StatsD server).

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::config::StatsdConfig;
use crate::limits::Limits;
use crate::point::{now_nanos, Precision};
use crate::protocols::statsd::Aggregator;
use crate::shutdown::Shutdown;
use crate::write::{LinePolicy, Writer};

/// How often the thread looks at the shutdown signal and the flush clock while no datagram comes.
const POLL: Duration = Duration::from_millis(50);
/// Least time between two logs of bad lines.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest wait between two store attempts while partitions are full.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Receives StatsD on `socket` until `shutdown`, then flushes what it holds and returns. Blocks:
/// run it on a thread of its own (`spawn_blocking`), with `runtime` the runtime the log runs on.
/// StatsD is anonymous: its new series count against the tenant `""`.
///
/// # Errors
/// When the socket cannot be given a read timeout.
pub fn serve(
    socket: UdpSocket,
    writer: Writer,
    config: &StatsdConfig,
    limits: Arc<Limits>,
    runtime: tokio::runtime::Handle,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    socket.set_read_timeout(Some(POLL))?;
    let mut aggregator = Aggregator::new(config.max_keys, config.percentiles.clone());
    let mut buffer = vec![0u8; 65_536];
    let mut next_flush = Instant::now() + config.flush_interval;
    let mut last_log: Option<Instant> = None;
    let flusher = Flusher { writer: writer.clone(), limits, runtime, shutdown: shutdown.clone() };
    while !shutdown.is_triggered() {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                let added = aggregator.add(&buffer[..n]);
                writer.stats().bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                if added.rejected > 0 {
                    writer.stats().lines_invalid.fetch_add(added.rejected as u64, Ordering::Relaxed);
                    if last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                        last_log = Some(Instant::now());
                        let first = added.errors.first().cloned().unwrap_or_default();
                        warn!(rejected = added.rejected, %first, "Bad StatsD lines.");
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(error) => debug!(%error, "StatsD receive failed."),
        }
        if Instant::now() >= next_flush {
            flusher.flush(&mut aggregator);
            next_flush += config.flush_interval;
        }
    }
    flusher.flush(&mut aggregator);
    Ok(())
}

struct Flusher {
    writer: Writer,
    limits: Arc<Limits>,
    runtime: tokio::runtime::Handle,
    shutdown: Shutdown,
}

impl Flusher {
    /// Stores the interval's points, retrying while partitions or the log are full; at shutdown
    /// only a few times, as nothing waits on UDP.
    fn flush(&self, aggregator: &mut Aggregator) {
        if aggregator.pending() == 0 {
            return;
        }
        let now = now_nanos();
        let converted = aggregator.flush(now);
        let tenant = self.limits.series.as_ref().map(|budget| budget.tenant(&Arc::from("")));
        let parse = || {
            let policy = tenant.as_deref().map_or(LinePolicy::All, LinePolicy::Tenant);
            self.writer.parse(&converted.lines, Precision::Nanoseconds, now, (1, usize::MAX), policy)
        };
        let mut parsed = parse();
        let mut backoff = Duration::from_millis(1);
        let mut attempts_after_shutdown = 0;
        loop {
            match self.runtime.block_on(self.writer.store(&mut parsed)) {
                Ok(()) => return,
                Err(error) if error.is_retryable() && attempts_after_shutdown < 20 => {
                    attempts_after_shutdown += usize::from(self.shutdown.is_triggered());
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if parsed.batches.is_empty() {
                        parsed = parse();
                    }
                }
                Err(error) => {
                    warn!(%error, points = parsed.points, "StatsD points of one interval could not be stored.");
                    self.writer.shed(&parsed);
                    return;
                }
            }
        }
    }
}
