//! The write path shared by every listener: parse a body into per-partition batches, then store
//! them: reserve room in their partitions, log the request in the write-ahead log, and once the
//! log has committed it, queue the batches (in log order, on the log's commit thread). Only then
//! is the request acknowledged.
//!
//! Parsing is CPU work, so listeners run it on the ingest rayon pool ([`Writer::run_cpu`]), never
//! on a tokio worker.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::batch::{PointBatch, RegionRule};
use crate::config::ModelConfig;
use crate::limits::TenantSeries;
use crate::line_protocol::{Escaped, LineError, ParsedLine, Parser, Reason};
use crate::point::{now_nanos, Precision};
use crate::router::{Rejected, Router};
use crate::series::SeriesHasher;
use crate::wal::group::GroupCommit;
use crate::wal::write_record::{self, WriteRecord};
use crate::wal::WalError;
use tracing::error;

/// Longest measurement and region value, in bytes: each names a directory of the Parquet tree,
/// where it may grow threefold by escaping and must stay under the 255-byte limit of a file name.
pub const MAX_PARTITION_VALUE_BYTES: usize = 80;

/// How many bad lines a reply names; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// What decides, beside the syntax, whether a well-formed line is stored.
#[derive(Debug, Clone, Copy, Default)]
pub enum LinePolicy<'a> {
    /// Every well-formed line.
    #[default]
    All,
    /// Lines of series the tenant knows or may still create (`limits.new-series-per-hour`).
    Tenant(&'a TenantSeries),
    /// A replay: every well-formed line except these, which a policy refused when received.
    Skip(&'a [u64]),
}

/// A body parsed into batches, not yet admitted.
#[derive(Debug, Default)]
pub struct ParsedBody {
    /// At most one batch per partition: `(partition, batch)`.
    pub batches: Vec<(usize, PointBatch)>,
    /// Points in `batches`.
    pub points: usize,
    /// Field values in `batches`.
    pub values: usize,
    /// The first [`MAX_REPORTED_ERRORS`] bad lines.
    pub errors: Vec<LineError>,
    /// All bad lines.
    pub error_count: usize,
    /// The number of the last line read (blank lines and comments included).
    pub last_line: usize,
    /// The request as a write-ahead log record, when the writer has a log and the body has points.
    record: Option<std::io::Result<Vec<u8>>>,
}

impl ParsedBody {
    fn record_error(&mut self, error: LineError) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        }
        self.error_count += 1;
    }
}

/// Why a request was not stored. Nothing of it will be processed, unless the log holds it (a
/// closed partition after the commit: only when the pipelines died).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No room in a partition, or the engine stopped.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The write-ahead log did not take the request (full, disk error, stopped).
    #[error(transparent)]
    Log(#[from] WalError),
    /// Logged, but the partitions closed before it was queued (only if the pipelines died): it
    /// is applied at the next start, from the log.
    #[error("the write is in the log but the engine stopped taking writes ({0}); it is applied at the next start")]
    Unqueued(Rejected),
}

impl StoreError {
    /// Whether the same request may be stored if sent again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rejected(Rejected::Full { .. }) => true,
            Self::Rejected(Rejected::Closed { .. }) => false,
            Self::Log(error) => error.is_retryable(),
            Self::Unqueued(_) => false,
        }
    }
}

/// Ingest counters over all listeners, counted once per request.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Points parsed from well-formed lines.
    pub points_parsed: AtomicU64,
    /// Points admitted into the partitions (acknowledged).
    pub points_accepted: AtomicU64,
    /// Field values admitted.
    pub values_accepted: AtomicU64,
    /// Lines rejected as malformed.
    pub lines_invalid: AtomicU64,
    /// Points refused because a partition was full (the client was told to retry).
    pub points_shed: AtomicU64,
    /// Bytes of request bodies received (after decompression).
    pub bytes_in: AtomicU64,
    /// Requests the write-ahead log refused (full, disk error, stopped).
    pub log_errors: AtomicU64,
    /// HTTP requests refused with 429 (over the tenant's rate).
    pub requests_rate_limited: AtomicU64,
    /// Lines refused because their series was new and over the tenant's budget.
    pub lines_series_limited: AtomicU64,
    /// When a log error was last logged (ns).
    last_log_error: AtomicI64,
}

/// Parses bodies and admits their points.
#[derive(Debug, Clone)]
pub struct Writer {
    router: Arc<Router>,
    regions: Arc<RegionRule>,
    max_future: std::time::Duration,
    cpu: Arc<rayon::ThreadPool>,
    stats: Arc<WriteStats>,
    log: Option<Arc<GroupCommit>>,
}

impl Writer {
    /// A writer that routes through `router`, applies the `[model]` rules and parses on `cpu`.
    pub fn new(router: Arc<Router>, model: &ModelConfig, cpu: Arc<rayon::ThreadPool>) -> Self {
        let regions = RegionRule { tag: model.region_tag.clone(), default: model.default_region.clone() };
        Self { router, regions: Arc::new(regions), max_future: model.max_future, cpu, stats: Arc::default(), log: None }
    }

    /// This writer, logging every request in `log` before it is queued (see [`Writer::store`]).
    #[must_use]
    pub fn with_log(mut self, log: Arc<GroupCommit>) -> Self {
        self.log = Some(log);
        self
    }

    /// This writer with counters of its own, so `/metrics` can tell protocols apart.
    #[must_use]
    pub fn with_own_stats(&self) -> Self {
        Self { stats: Arc::default(), ..self.clone() }
    }

    /// The router.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Ingest counters.
    pub fn stats(&self) -> &Arc<WriteStats> {
        &self.stats
    }

    /// Parses `body` into one batch per partition. Lines without a timestamp get `now` (ns);
    /// `first_line` numbers the first line; lines longer than `max_line_bytes` are rejected, and
    /// well-formed lines `policy` refuses.
    pub fn parse(
        &self,
        body: &[u8],
        precision: Precision,
        now: i64,
        (first_line, max_line_bytes): (usize, usize),
        policy: LinePolicy<'_>,
    ) -> ParsedBody {
        let partitions = self.router.partitions();
        let mut by_partition: Vec<PointBatch> = (0..partitions).map(|_| PointBatch::new()).collect();
        let mut out = ParsedBody::default();
        let mut hasher = SeriesHasher::default();
        let mut parser =
            Parser::new(body, precision, now, first_line).max_line_bytes(max_line_bytes).max_future(self.max_future);
        // Lines a policy refused: the log records them, so a replay skips exactly these.
        let mut refused = Vec::new();
        let mut skip = match policy {
            LinePolicy::Skip(lines) => lines,
            _ => &[],
        };
        while let Some(result) = parser.next() {
            match result {
                Ok(line) => {
                    if let Some(error) = self.check_names(&line) {
                        out.record_error(error);
                        continue;
                    }
                    let number = line.line() as u64;
                    while skip.first().is_some_and(|&s| s < number) {
                        skip = &skip[1..];
                    }
                    if skip.first() == Some(&number) {
                        continue;
                    }
                    let series = hasher.id_of(&line);
                    if let LinePolicy::Tenant(tenant) = policy {
                        if let Err(limited) = tenant.admit(series) {
                            out.record_error(LineError { line: line.line(), column: 1, reason: limited.into() });
                            refused.push(number);
                            continue;
                        }
                    }
                    let batch = &mut by_partition[self.router.partition_of(series)];
                    batch.push_line(&line, series, &self.regions);
                }
                Err(error) => out.record_error(error),
            }
        }
        out.last_line = parser.line();
        out.batches = by_partition.into_iter().enumerate().filter(|(_, b)| !b.is_empty()).collect();
        out.points = out.batches.iter().map(|(_, b)| b.len()).sum();
        out.values = out.batches.iter().map(|(_, b)| b.value_count()).sum();
        if self.log.is_some() && out.points > 0 {
            // The whole body is logged, bad lines too: parsing it again gives the same good lines.
            out.record = Some(WriteRecord::encode(precision, now, max_line_bytes as u64, &refused, body));
        }
        self.stats.bytes_in.fetch_add(body.len() as u64, Ordering::Relaxed);
        self.stats.points_parsed.fetch_add(out.points as u64, Ordering::Relaxed);
        self.stats.lines_invalid.fetch_add((out.error_count - refused.len()) as u64, Ordering::Relaxed);
        self.stats.lines_series_limited.fetch_add(refused.len() as u64, Ordering::Relaxed);
        out
    }

    /// A measurement or region too long to name a directory of the Parquet tree.
    fn check_names(&self, line: &ParsedLine<'_, '_>) -> Option<LineError> {
        let too_long = |what, name: &Escaped<'_>| {
            (name.name().len() > MAX_PARTITION_VALUE_BYTES).then(|| LineError {
                line: line.line(),
                column: line.column_of(name),
                reason: Reason::NameTooLong(what, MAX_PARTITION_VALUE_BYTES),
            })
        };
        too_long("measurement", &line.measurement()).or_else(|| {
            let region = line.tags().iter().find(|(k, _)| *k.name() == *self.regions.tag.as_bytes())?;
            too_long("region tag value", &region.1)
        })
    }

    /// Admits the batches of `parsed` all together or none of them, counting them if admitted.
    ///
    /// # Errors
    /// [`Rejected`] with the batches handed back into `parsed`, so a caller may retry without
    /// parsing again, or give up and call [`Writer::shed`].
    pub fn admit(&self, parsed: &mut ParsedBody) -> Result<(), Rejected> {
        let batches = std::mem::take(&mut parsed.batches);
        match self.router.admit(batches) {
            Ok(()) => {
                self.stats.points_accepted.fetch_add(parsed.points as u64, Ordering::Relaxed);
                self.stats.values_accepted.fetch_add(parsed.values as u64, Ordering::Relaxed);
                Ok(())
            }
            Err((rejected, batches)) => {
                parsed.batches = batches;
                Err(rejected)
            }
        }
    }

    /// Stores the batches of `parsed`: with a log, reserves room in their partitions, logs the
    /// request, and queues the batches once the log has committed it (the request may be
    /// acknowledged when this returns `Ok`); without one, admits them.
    ///
    /// # Errors
    /// [`StoreError`]. On [`Rejected::Full`] the batches come back into `parsed` for a retry;
    /// after a log error they are gone (parse the body again to retry).
    pub async fn store(&self, parsed: &mut ParsedBody) -> Result<(), StoreError> {
        let Some(log) = &self.log else {
            return Ok(self.admit(parsed)?);
        };
        let Some(record) = parsed.record.take() else {
            return Ok(self.admit(parsed)?); // nothing to log: no points
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                return Err(StoreError::Log(WalError::Io { what: "encoding", path: "record".into(), source: error }))
            }
        };
        let batches = std::mem::take(&mut parsed.batches);
        let reservation = match self.router.reserve(batches) {
            Ok(reservation) => reservation,
            Err((rejected, batches)) => {
                parsed.batches = batches;
                parsed.record = Some(Ok(record));
                return Err(rejected.into());
            }
        };
        let logged =
            log.append_then(write_record::KIND, record, move |_| reservation.send().map_err(|(rejected, _)| rejected));
        if let Err(closed) = logged.await.inspect_err(|e| self.log_failed(e))? {
            return Err(StoreError::Unqueued(closed));
        }
        self.stats.points_accepted.fetch_add(parsed.points as u64, Ordering::Relaxed);
        self.stats.values_accepted.fetch_add(parsed.values as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Logs a failure of the write-ahead log, at most once per 10 s: under a full disk every request
    /// fails the same way.
    fn log_failed(&self, error: &WalError) {
        let now = now_nanos();
        let last = self.stats.last_log_error.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000_000_000
            && self.stats.last_log_error.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            error!(%error, "The write-ahead log refused a request; the client was told.");
        }
        self.stats.log_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the points of a body that will not be admitted (the client was told to retry).
    pub fn shed(&self, parsed: &ParsedBody) {
        self.stats.points_shed.fetch_add(parsed.points as u64, Ordering::Relaxed);
    }

    /// Runs CPU work on the ingest pool and awaits its result without blocking the runtime.
    pub async fn run_cpu<R: Send + 'static>(&self, work: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cpu.spawn(move || {
            // The receiver only disappears if the request was cancelled; then nobody wants this.
            let _ = tx.send(work());
        });
        match rx.await {
            Ok(result) => result,
            // rayon aborts the process when a job panics, so the sender is never dropped unsent.
            Err(_) => unreachable!("an ingest job ended without a result"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::SeriesBudget;

    fn writer() -> Writer {
        let (router, receivers) = Router::new(2, 1 << 20);
        std::mem::forget(receivers); // the channels stay open; nothing is admitted here
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        Writer::new(Arc::new(router), &ModelConfig::default(), Arc::new(pool))
    }

    #[test]
    fn a_replay_skips_exactly_the_lines_a_series_budget_refused() {
        let writer = writer();
        let budget = SeriesBudget::new(2);
        let tenant = budget.tenant(&"acme".into());
        let body = b"m,h=a v=1 1\nm,h=b v=1 2\nbad\nm,h=c v=1 3\nm,h=a v=2 4\nm,h=d v=1 5\n";
        let live = writer.parse(body, Precision::Nanoseconds, 0, (1, usize::MAX), LinePolicy::Tenant(&tenant));
        assert_eq!((live.points, live.error_count), (3, 3), "{:?}", live.errors);
        let refused: Vec<u64> =
            live.errors.iter().filter(|e| matches!(e.reason, Reason::SeriesLimit(_))).map(|e| e.line as u64).collect();
        assert_eq!(refused, [4, 6]);

        // The server restarted: its memory of known series is gone, the log's list is not.
        let replay = writer.parse(body, Precision::Nanoseconds, 0, (1, usize::MAX), LinePolicy::Skip(&refused));
        assert_eq!(replay.points, 3);
        let times = |parsed: &ParsedBody| -> Vec<i64> {
            let mut t: Vec<i64> = parsed.batches.iter().flat_map(|(_, b)| b.iter().map(|p| p.time())).collect();
            t.sort_unstable();
            t
        };
        assert_eq!(times(&replay), times(&live));
        assert_eq!(times(&live), [1, 2, 4]);
    }
}
