//! The router: partition channels, jump-hash placement and all-or-nothing admission.
//!
//! Each partition is an unbounded crossbeam channel of [`PointBatch`]es guarded by a byte budget:
//! the budget is the bound, the channel only carries data (the semaphore-plus-queue shape of
//! vector's `limited_queue`). A request's batches are admitted together or not at all: budget is
//! reserved on every partition the request touches before anything is sent, so a rejected request
//! leaves nothing behind and the client's retry cannot duplicate a point.
//!
//! Besides batches, a channel carries checkpoint barriers ([`Barrier`]): markers sent to every
//! partition at one place in the write-ahead log's order, so each partition knows which of its
//! batches come before a checkpoint and which after.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::batch::PointBatch;
use crate::series::SeriesId;

/// Jump consistent hash (Lamping & Veach, 2014): maps `key` to a bucket in `0..buckets` so that
/// growing from n to n+1 buckets moves only 1/(n+1) of the keys.
///
/// # Panics
/// If `buckets` is 0.
pub fn jump_hash(mut key: u64, buckets: usize) -> usize {
    assert!(buckets > 0, "jump_hash needs at least one bucket");
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// Counters and budget of one partition, shared by the router and the partition's consumer.
#[derive(Debug, Default)]
pub struct PartitionStats {
    /// Points admitted.
    pub points_in: AtomicU64,
    /// Batches admitted.
    pub batches_in: AtomicU64,
    /// Batches refused because this partition was full.
    pub batches_rejected: AtomicU64,
    /// Points in those batches.
    pub points_rejected: AtomicU64,
    /// Bytes of batches queued and not yet taken by the consumer: the budget in use.
    pub queued_bytes: AtomicUsize,
    /// Points queued and not yet taken.
    pub queued_points: AtomicUsize,
}

/// Wakes writers waiting for room in a full partition ([`Router::wait_for_room`]) when a
/// consumer takes batches. Shared by the router and every receiver.
#[derive(Debug, Default)]
struct Room {
    notify: tokio::sync::Notify,
    /// Writers waiting now: a consumer only notifies when there is someone to wake.
    waiting: AtomicUsize,
}

/// A checkpoint marker: every batch a partition received before it comes from log records up to
/// `sequence`, every batch after it from later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint's number: the batches before the barrier belong to this epoch.
    pub epoch: u64,
    /// The last log record before the barrier.
    pub sequence: u64,
}

/// What a partition channel carries.
#[derive(Debug)]
pub enum Delivery {
    /// Points.
    Batch(PointBatch),
    /// A checkpoint marker.
    Barrier(Barrier),
}

/// Why a request was not admitted. Nothing of it was enqueued.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// A partition's queue is full: retry later.
    #[error("partition {partition} is full ({queued_bytes} bytes queued, capacity {capacity} bytes)")]
    Full {
        /// The first partition found full.
        partition: usize,
        /// Bytes queued there.
        queued_bytes: usize,
        /// Its capacity.
        capacity: usize,
    },
    /// The engine stopped consuming (shutting down).
    #[error("partition {partition} is closed: the engine is shutting down")]
    Closed {
        /// The closed partition.
        partition: usize,
    },
}

/// The sending side: places series on partitions and admits batches.
#[derive(Debug)]
pub struct Router {
    senders: Vec<Sender<Delivery>>,
    stats: Vec<Arc<PartitionStats>>,
    capacity_bytes: usize,
    room: Arc<Room>,
}

/// The receiving side of one partition, owned by the engine task that drains it.
#[derive(Debug)]
pub struct PartitionReceiver {
    /// The partition number.
    pub partition: usize,
    receiver: Receiver<Delivery>,
    stats: Arc<PartitionStats>,
    room: Arc<Room>,
}

impl Router {
    /// A router over `partitions` channels, each holding at most `capacity_bytes` of batches
    /// (a single batch larger than that is still admitted into an empty partition, so no request
    /// is refused forever). Returns the receivers, one per partition, in order.
    ///
    /// # Panics
    /// If `partitions` is 0 (the config validation forbids it).
    pub fn new(partitions: usize, capacity_bytes: usize) -> (Self, Vec<PartitionReceiver>) {
        assert!(partitions > 0, "a router needs at least one partition");
        let mut senders = Vec::with_capacity(partitions);
        let mut stats = Vec::with_capacity(partitions);
        let mut receivers = Vec::with_capacity(partitions);
        let room = Arc::new(Room::default());
        for partition in 0..partitions {
            let (tx, rx) = crossbeam_channel::unbounded();
            let shared = Arc::new(PartitionStats::default());
            senders.push(tx);
            stats.push(shared.clone());
            receivers.push(PartitionReceiver { partition, receiver: rx, stats: shared, room: room.clone() });
        }
        let router = Self { senders, stats, capacity_bytes, room };
        (router, receivers)
    }

    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.senders.len()
    }

    /// The partition of a series. The series id covers the region (a tag like any other), so one
    /// series, and so one (region, series) pair, always lands in one partition.
    pub fn partition_of(&self, series: SeriesId) -> usize {
        jump_hash(series, self.senders.len())
    }

    /// Counters of every partition, in order.
    pub fn stats(&self) -> &[Arc<PartitionStats>] {
        &self.stats
    }

    /// Admits `batches` (at most one per partition, as `(partition, batch)`) all together, or none
    /// of them: [`Router::reserve`] then [`Reservation::send`].
    ///
    /// # Errors
    /// [`Rejected`] when a partition is full or closed; the batches come back untouched so the
    /// caller can retry without parsing again.
    pub fn admit(
        self: &Arc<Self>,
        batches: Vec<(usize, PointBatch)>,
    ) -> Result<(), (Rejected, Vec<(usize, PointBatch)>)> {
        self.reserve(batches)?.send()
    }

    /// Reserves room for `batches` in every partition they go to, all together or none: sending
    /// them later cannot be refused for space. The write-ahead log sits between the two steps, so
    /// a request is logged only once it is sure to be taken.
    ///
    /// # Errors
    /// [`Rejected::Full`] when a partition has no room; the batches come back untouched.
    pub fn reserve(
        self: &Arc<Self>,
        batches: Vec<(usize, PointBatch)>,
    ) -> Result<Reservation, (Rejected, Vec<(usize, PointBatch)>)> {
        for (reserved, (partition, batch)) in batches.iter().enumerate() {
            if let Err(queued_bytes) = self.reserve_bytes(*partition, batch.heap_bytes()) {
                for (p, b) in &batches[..reserved] {
                    self.stats[*p].queued_bytes.fetch_sub(b.heap_bytes(), Ordering::AcqRel);
                }
                let stats = &self.stats[*partition];
                stats.batches_rejected.fetch_add(1, Ordering::Relaxed);
                stats.points_rejected.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let rejected = Rejected::Full { partition: *partition, queued_bytes, capacity: self.capacity_bytes };
                return Err((rejected, batches));
            }
        }
        Ok(Reservation { router: self.clone(), batches })
    }

    /// Sends `barrier` to `partition` (barriers take no budget).
    ///
    /// # Errors
    /// [`Rejected::Closed`] when the partition's consumer is gone.
    pub fn send_barrier(&self, partition: usize, barrier: Barrier) -> Result<(), Rejected> {
        self.senders[partition].send(Delivery::Barrier(barrier)).map_err(|_| Rejected::Closed { partition })
    }

    /// The first partition whose queue is at or over its capacity, if any: a request arriving now
    /// would likely be refused.
    pub fn full_partition(&self) -> Option<Rejected> {
        self.stats.iter().enumerate().find_map(|(partition, stats)| {
            let queued_bytes = stats.queued_bytes.load(Ordering::Acquire);
            (queued_bytes >= self.capacity_bytes).then_some(Rejected::Full {
                partition,
                queued_bytes,
                capacity: self.capacity_bytes,
            })
        })
    }

    /// Waits until no partition is full, or `timeout` has passed: how a writer waits for room
    /// (backpressure on its connection) before giving up with a 503. Returns the full partition
    /// when the time ran out.
    pub async fn wait_for_room(&self, timeout: Duration) -> Option<Rejected> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let full = self.full_partition()?;
            if !self.wait_for_release(deadline).await {
                return self.full_partition().or(Some(full));
            }
        }
    }

    /// Waits until a consumer takes batches from any partition (room was freed), or `deadline`;
    /// whether room was freed. For a writer whose batches did not fit: it tries again after.
    pub async fn wait_for_release(&self, deadline: tokio::time::Instant) -> bool {
        let notified = self.room.notify.notified();
        self.room.waiting.fetch_add(1, Ordering::AcqRel);
        let woken = tokio::time::timeout_at(deadline, notified).await.is_ok();
        self.room.waiting.fetch_sub(1, Ordering::AcqRel);
        woken
    }

    /// Reserves `bytes` of a partition's budget; `Err(queued)` when it does not fit.
    fn reserve_bytes(&self, partition: usize, bytes: usize) -> Result<(), usize> {
        let queued = &self.stats[partition].queued_bytes;
        let mut current = queued.load(Ordering::Acquire);
        loop {
            if current > 0 && current + bytes > self.capacity_bytes {
                return Err(current);
            }
            match queued.compare_exchange_weak(current, current + bytes, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

/// Batches with room reserved in their partitions, from [`Router::reserve`]. Dropped unsent, it
/// gives the room back.
#[derive(Debug)]
pub struct Reservation {
    router: Arc<Router>,
    batches: Vec<(usize, PointBatch)>,
}

impl Reservation {
    /// Queues the batches in their partitions.
    ///
    /// # Errors
    /// [`Rejected::Closed`] when a partition's consumer is gone (at shutdown, or if the pipelines
    /// died); the unsent batches come back. Those sent before it are lost with the consumer, so
    /// the request is not retryable as a whole.
    pub fn send(mut self) -> Result<(), (Rejected, Vec<(usize, PointBatch)>)> {
        let router = self.router.clone();
        let mut batches = std::mem::take(&mut self.batches).into_iter();
        while let Some((partition, batch)) = batches.next() {
            let (points, bytes) = (batch.len(), batch.heap_bytes());
            let stats = &router.stats[partition];
            stats.queued_points.fetch_add(points, Ordering::AcqRel);
            if let Err(returned) = router.senders[partition].send(Delivery::Batch(batch)) {
                stats.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                stats.queued_points.fetch_sub(points, Ordering::AcqRel);
                let Delivery::Batch(returned) = returned.0 else { unreachable!("a batch was sent") };
                let mut rest = vec![(partition, returned)];
                for (p, b) in batches {
                    router.stats[p].queued_bytes.fetch_sub(b.heap_bytes(), Ordering::AcqRel);
                    rest.push((p, b));
                }
                return Err((Rejected::Closed { partition }, rest));
            }
            stats.points_in.fetch_add(points as u64, Ordering::Relaxed);
            stats.batches_in.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for (partition, batch) in &self.batches {
            self.router.stats[*partition].queued_bytes.fetch_sub(batch.heap_bytes(), Ordering::AcqRel);
        }
        if !self.batches.is_empty() && self.router.room.waiting.load(Ordering::Acquire) > 0 {
            self.router.room.notify.notify_waiters();
        }
    }
}

impl PartitionReceiver {
    /// Takes the next batch if one is queued, skipping barriers (for consumers that take no
    /// checkpoints).
    pub fn try_recv(&self) -> Option<PointBatch> {
        loop {
            match self.receiver.try_recv().ok()? {
                Delivery::Batch(batch) => {
                    self.release(&batch);
                    return Some(batch);
                }
                Delivery::Barrier(_) => {}
            }
        }
    }

    /// Waits up to `timeout` for the next delivery. `Err(true)` when every sender is gone.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Delivery, bool> {
        match self.receiver.recv_timeout(timeout) {
            Ok(delivery) => {
                if let Delivery::Batch(batch) = &delivery {
                    self.release(batch);
                }
                Ok(delivery)
            }
            Err(RecvTimeoutError::Timeout) => Err(false),
            Err(RecvTimeoutError::Disconnected) => Err(true),
        }
    }

    /// This partition's counters.
    pub fn stats(&self) -> &Arc<PartitionStats> {
        &self.stats
    }

    fn release(&self, batch: &PointBatch) {
        self.stats.queued_bytes.fetch_sub(batch.heap_bytes(), Ordering::AcqRel);
        self.stats.queued_points.fetch_sub(batch.len(), Ordering::AcqRel);
        if self.room.waiting.load(Ordering::Acquire) > 0 {
            self.room.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::RegionRule;
    use crate::line_protocol::Parser;
    use crate::point::Precision;
    use crate::series::SeriesHasher;

    fn batch(lines: &str) -> PointBatch {
        let regions = RegionRule { tag: "region".into(), default: "default".into() };
        let mut parser = Parser::new(lines.as_bytes(), Precision::Nanoseconds, 0, 1);
        let mut batch = PointBatch::new();
        while let Some(line) = parser.next() {
            let line = line.unwrap();
            let id = SeriesHasher::default().id_of(&line);
            batch.push_line(&line, id, &regions);
        }
        batch
    }

    #[test]
    fn jump_hash_matches_the_reference_values() {
        // Test vectors of github.com/dgryski/go-jump, a port of the paper's reference code.
        assert_eq!(jump_hash(1, 1), 0);
        assert_eq!(jump_hash(42, 57), 43);
        assert_eq!(jump_hash(0xDEAD_10CC, 1), 0);
        assert_eq!(jump_hash(0xDEAD_10CC, 666), 361);
        assert_eq!(jump_hash(256, 1024), 520);
    }

    proptest! {
        #[test]
        fn jump_hash_moves_keys_only_to_the_new_bucket(key in any::<u64>(), n in 1usize..200) {
            let before = jump_hash(key, n);
            let after = jump_hash(key, n + 1);
            prop_assert!(before < n);
            prop_assert!(after == before || after == n);
        }
    }

    #[test]
    fn admission_is_all_or_nothing() {
        let (router, receivers) = Router::new(2, 1 << 20);
        let router = Arc::new(router);
        let small = batch("m,region=a v=1\n");
        let big_bytes = (1 << 20) - small.heap_bytes() + 1;
        // Fill partition 1 so that a small batch no longer fits.
        let mut filler = batch("m v=1\n");
        filler.push_line(
            &Parser::new(b"m v=2", Precision::Nanoseconds, 0, 1).next().unwrap().unwrap(),
            1,
            &RegionRule { tag: "region".into(), default: "d".into() },
        );
        router.admit(vec![(1, filler)]).unwrap();
        router.stats[1].queued_bytes.store(big_bytes, Ordering::SeqCst);

        let request = vec![(0, batch("m,region=a v=1\n")), (1, batch("m,region=b v=1\n"))];
        let (rejected, back) = router.admit(request).unwrap_err();
        assert!(matches!(rejected, Rejected::Full { partition: 1, .. }), "{rejected}");
        assert_eq!(back.len(), 2, "the batches come back for a retry");
        assert!(receivers[0].try_recv().is_none(), "nothing of the request reached partition 0");
        assert_eq!(router.stats[0].queued_bytes.load(Ordering::SeqCst), 0, "its reservation was released");
        assert_eq!(router.stats[1].batches_rejected.load(Ordering::SeqCst), 1);

        // Once partition 1 drains, the same batches are admitted.
        router.stats[1].queued_bytes.store(0, Ordering::SeqCst);
        let _ = receivers[1].try_recv();
        router.stats[1].queued_bytes.store(0, Ordering::SeqCst);
        router.admit(back).unwrap();
        assert_eq!(receivers[0].try_recv().unwrap().len(), 1);
        assert_eq!(receivers[1].try_recv().unwrap().len(), 1);
    }

    #[test]
    fn a_batch_larger_than_the_capacity_fits_an_empty_partition() {
        let (router, receivers) = Router::new(1, 1);
        let router = Arc::new(router);
        router.admit(vec![(0, batch("m v=1\nm v=2\n"))]).unwrap();
        assert!(router.admit(vec![(0, batch("m v=3\n"))]).is_err());
        assert_eq!(receivers[0].try_recv().unwrap().len(), 2);
        assert_eq!(router.stats[0].queued_bytes.load(Ordering::SeqCst), 0);
        router.admit(vec![(0, batch("m v=3\n"))]).unwrap();
    }

    #[test]
    fn a_reservation_holds_room_until_sent_and_gives_it_back_when_dropped() {
        let (router, receivers) = Router::new(1, 1);
        let router = Arc::new(router);
        let held = router.reserve(vec![(0, batch("m v=1\n"))]).unwrap();
        assert!(router.reserve(vec![(0, batch("m v=2\n"))]).is_err(), "the room is taken");
        drop(held);
        assert_eq!(router.stats[0].queued_bytes.load(Ordering::SeqCst), 0, "given back");
        assert!(receivers[0].try_recv().is_none(), "nothing was sent");
        let held = router.reserve(vec![(0, batch("m v=2\n"))]).unwrap();
        held.send().unwrap();
        assert_eq!(receivers[0].try_recv().unwrap().len(), 1);
        assert_eq!(router.stats[0].queued_bytes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn batches_keep_points_regions_and_text() {
        let b = batch("cpu,region=eu-west,host=a v=1.5,s=\"x y\" 10\nmem used=3i 20\n");
        let points: Vec<_> = b.iter().map(|p| (p.region().to_owned(), p.to_point())).collect();
        assert_eq!(points[0].0, "eu-west");
        assert_eq!(points[1].0, "default");
        assert_eq!(points[0].1.tags, vec![("host".into(), "a".into()), ("region".into(), "eu-west".into())]);
        assert_eq!(points[0].1.fields[1], ("s".into(), crate::FieldValue::String("x y".into())));
        assert_eq!(points[1].1.time, 20);
        assert_eq!(b.value_count(), 3);
    }
}
