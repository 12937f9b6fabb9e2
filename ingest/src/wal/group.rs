//! Group commit: the log runs on a thread of its own (its writes and fsyncs block), and requests
//! from any number of connections queue for it. A group starts with the first waiting append and
//! takes whatever else arrives within `flush_interval` (or until 1 MiB is pending); then one
//! write and one fsync make the whole group durable, and every append in it is answered.
//!
//! Answers run on the commit thread in sequence order ([`GroupCommit::append_then`]), so work
//! done there (queueing a request's batches in the partitions) happens in log order too; and a
//! marker ([`GroupCommit::marker`]) runs at an exact place in that order, which is how checkpoint
//! barriers reach the partitions between two records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::{Wal, WalError};

/// A group is committed at the latest once this much is pending.
const GROUP_BYTES: usize = 1 << 20;

/// Counters of the commit thread.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// Commits (one write and, with fsync, one fsync each).
    pub commits: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Bytes of the log now.
    pub bytes: AtomicU64,
    /// How long each commit's write and fsync took.
    pub commit_seconds: crate::histogram::Histogram,
}

/// Answers an append on the commit thread: its sequence once committed, or why not.
type Done = Box<dyn FnOnce(Result<u64, WalError>) + Send>;

enum Request {
    Append { kind: u8, payload: Vec<u8>, done: Done },
    Marker(Box<dyn FnOnce(u64) + Send>),
    Checkpoint { sequence: u64, done: oneshot::Sender<Result<(), WalError>> },
}

/// The log behind a commit thread.
#[derive(Debug)]
pub struct GroupCommit {
    /// Unbounded: the callers bound what is in flight (ingest admits a request only within its
    /// memory budget), and an append must never block an async task.
    requests: Option<Sender<Request>>,
    thread: Option<JoinHandle<Wal>>,
    stats: Arc<GroupStats>,
}

impl GroupCommit {
    /// Starts the commit thread for `wal`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(wal: Wal, flush_interval: Duration) -> std::io::Result<Self> {
        let (requests, receiver) = crossbeam_channel::unbounded();
        let stats = Arc::new(GroupStats::default());
        stats.bytes.store(wal.bytes(), Ordering::Relaxed);
        let thread = std::thread::Builder::new().name("augur-wal".into()).spawn({
            let stats = stats.clone();
            move || run(wal, &receiver, flush_interval, &stats)
        })?;
        Ok(Self { requests: Some(requests), thread: Some(thread), stats })
    }

    /// Appends a record and waits until its group is committed; returns its sequence.
    ///
    /// # Errors
    /// What the log refused ([`WalError`]); [`WalError::Stopped`] when the thread is gone.
    pub async fn append(&self, kind: u8, payload: Vec<u8>) -> Result<u64, WalError> {
        self.append_then(kind, payload, |sequence| sequence).await
    }

    /// Appends a record; once its group is committed, runs `then` with its sequence on the commit
    /// thread, in sequence order with every other append, and returns what it returned. If the
    /// record is not committed, `then` is dropped unrun.
    ///
    /// # Errors
    /// What the log refused ([`WalError`]); [`WalError::Stopped`] when the thread is gone.
    pub async fn append_then<T: Send + 'static>(
        &self,
        kind: u8,
        payload: Vec<u8>,
        then: impl FnOnce(u64) -> T + Send + 'static,
    ) -> Result<T, WalError> {
        let (answer, answered) = oneshot::channel();
        let done: Done = Box::new(move |result: Result<u64, WalError>| {
            let _ = answer.send(result.map(then));
        });
        self.send(Request::Append { kind, payload, done })?;
        answered.await.map_err(|_| WalError::Stopped)?
    }

    /// Runs `marker` on the commit thread once everything queued before it is committed, with the
    /// last committed sequence: nothing appended after it comes before it.
    ///
    /// # Errors
    /// [`WalError::Stopped`] when the thread is gone.
    pub fn marker(&self, marker: impl FnOnce(u64) + Send + 'static) -> Result<(), WalError> {
        self.send(Request::Marker(Box::new(marker)))
    }

    /// Records that everything up to `sequence` is durable downstream (see [`Wal::checkpoint`]).
    /// Blocks; call it from a thread of its own, not from async code.
    ///
    /// # Errors
    /// What the log refused; [`WalError::Stopped`] when the thread is gone.
    pub fn checkpoint(&self, sequence: u64) -> Result<(), WalError> {
        let (done, answer) = oneshot::channel();
        self.send(Request::Checkpoint { sequence, done })?;
        answer.blocking_recv().map_err(|_| WalError::Stopped)?
    }

    fn send(&self, request: Request) -> Result<(), WalError> {
        self.requests.as_ref().and_then(|r| r.send(request).ok()).ok_or(WalError::Stopped)
    }

    /// The commit thread's counters.
    pub fn stats(&self) -> &Arc<GroupStats> {
        &self.stats
    }

    /// Commits what is queued, stops the thread and hands the log back.
    ///
    /// # Errors
    /// [`WalError::Stopped`] if the thread panicked.
    pub fn stop(mut self) -> Result<Wal, WalError> {
        self.requests = None;
        self.thread.take().and_then(|t| t.join().ok()).ok_or(WalError::Stopped)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut wal: Wal, requests: &Receiver<Request>, flush_interval: Duration, stats: &GroupStats) -> Wal {
    let mut waiting: Vec<(u64, Done)> = Vec::new();
    while let Ok(first) = requests.recv() {
        let deadline = Instant::now() + flush_interval;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Append { kind, payload, done } => match wal.append(kind, &payload) {
                    Ok(sequence) => waiting.push((sequence, done)),
                    Err(error) => done(Err(error)),
                },
                Request::Marker(marker) => {
                    commit(&mut wal, &mut waiting, stats);
                    marker(wal.committed());
                }
                // Everything before it in the queue is committed first, so a checkpoint never
                // names a record that is not durable yet.
                Request::Checkpoint { sequence, done } => {
                    commit(&mut wal, &mut waiting, stats);
                    let _ = done.send(wal.checkpoint(sequence));
                    stats.bytes.store(wal.bytes(), Ordering::Relaxed);
                }
            }
            if wal.pending_bytes() < GROUP_BYTES {
                // Timed out or disconnected: the group is complete either way.
                next = requests.recv_deadline(deadline).ok();
            }
        }
        commit(&mut wal, &mut waiting, stats);
    }
    wal
}

/// Commits the pending records and answers their appends.
fn commit(wal: &mut Wal, waiting: &mut Vec<(u64, Done)>, stats: &GroupStats) {
    if waiting.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let result = wal.commit();
    if result.is_ok() {
        stats.commit_seconds.observe(started.elapsed());
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(waiting.len() as u64, Ordering::Relaxed);
        stats.bytes.store(wal.bytes(), Ordering::Relaxed);
    }
    for (sequence, done) in waiting.drain(..) {
        done(match &result {
            Ok(_) => Ok(sequence),
            Err(error) => Err(error.duplicate()),
        });
    }
}
