//! The log against an in-memory model: random appends, commits, checkpoints, crashes (with the
//! last commit torn at a random byte, or garbage after it) and recoveries.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;

use super::group::GroupCommit;
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        kind: u8,
        len: usize,
    },
    Commit,
    Checkpoint {
        fraction: f64,
    },
    /// Crash after the writes of a commit reached the disk only up to `cut` (a fraction of them).
    TornCommit {
        cut: f64,
    },
    /// Crash with random bytes after the last commit (a write that never completed).
    Garbage {
        bytes: Vec<u8>,
    },
    /// A clean reopen.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<u8>(), 0usize..200).prop_map(|(kind, len)| Op::Append { kind, len }),
        3 => Just(Op::Commit),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::Checkpoint { fraction }),
        1 => (0.0f64..1.0).prop_map(|cut| Op::TornCommit { cut }),
        1 => proptest::collection::vec(any::<u8>(), 1..40).prop_map(|bytes| Op::Garbage { bytes }),
        1 => Just(Op::Reopen),
    ]
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("augur-wal-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn options(dir: &TempDir, segment_bytes: u64) -> WalOptions {
    WalOptions { dir: dir.0.clone(), segment_bytes, max_bytes: 1 << 30, durability: Durability::Fsync }
}

fn payload(sequence: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (sequence as usize * 31 + i) as u8).collect()
}

/// The newest segment file.
fn last_segment(dir: &TempDir) -> PathBuf {
    let mut names: Vec<PathBuf> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    names.sort();
    names.pop().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn recovery_returns_every_committed_record_after_the_checkpoint_in_order(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 64u64..2048,
    ) {
        let dir = TempDir::new();
        let (mut wal, recovery) = Wal::open(options(&dir, segment_bytes)).unwrap();
        prop_assert!(recovery.records.is_empty());
        // The model: every record in the log (committed, or recovered from a torn commit), and
        // the pending ones.
        let mut durable: Vec<Record> = Vec::new();
        let mut pending: Vec<Record> = Vec::new();
        let mut checkpoint = 0;
        for op in ops {
            match op {
                Op::Append { kind, len } => {
                    let sequence = wal.append(kind, &payload(wal.next_sequence(), len)).unwrap();
                    prop_assert_eq!(sequence, durable.len() as u64 + pending.len() as u64 + 1);
                    pending.push(Record { sequence, kind, payload: payload(sequence, len) });
                }
                Op::Commit => {
                    prop_assert_eq!(wal.commit().unwrap(), durable.len() as u64 + pending.len() as u64);
                    durable.append(&mut pending);
                }
                Op::Checkpoint { fraction } => {
                    let target = (durable.len() as f64 * fraction) as u64;
                    wal.checkpoint(target).unwrap();
                    checkpoint = checkpoint.max(target);
                    prop_assert_eq!(wal.last_checkpoint(), checkpoint);
                }
                Op::TornCommit { cut } => {
                    let path = last_segment(&dir);
                    let before = fs::metadata(&path).unwrap().len();
                    wal.commit().unwrap();
                    drop(wal);
                    // The commit may have rolled to a new segment: tear the newest one.
                    let path_now = last_segment(&dir);
                    let start = if path_now == path { before } else { segment::HEADER.len() as u64 };
                    let end = fs::metadata(&path_now).unwrap().len();
                    let keep = start + ((end - start) as f64 * cut) as u64;
                    OpenOptions::new().write(true).open(&path_now).unwrap().set_len(keep).unwrap();
                    let (reopened, recovery) = Wal::open(options(&dir, segment_bytes)).unwrap();
                    wal = reopened;
                    // The torn commit was never acknowledged: any prefix of it may survive.
                    let expected: Vec<&Record> = durable.iter().filter(|r| r.sequence > checkpoint).collect();
                    prop_assert!(recovery.records.len() >= expected.len());
                    let (old, new) = recovery.records.split_at(expected.len());
                    prop_assert_eq!(old.iter().collect::<Vec<_>>(), expected);
                    prop_assert!(new.len() <= pending.len());
                    prop_assert_eq!(new, &pending[..new.len()]);
                    durable.extend(new.iter().cloned());
                    pending.clear();
                    prop_assert_eq!(wal.next_sequence(), durable.len() as u64 + 1);
                }
                Op::Garbage { bytes } => {
                    drop(wal);
                    OpenOptions::new().append(true).open(last_segment(&dir)).unwrap().write_all(&bytes).unwrap();
                    let (reopened, recovery) = Wal::open(options(&dir, segment_bytes)).unwrap();
                    wal = reopened;
                    prop_assert!(recovery.torn_bytes <= bytes.len() as u64);
                    let expected: Vec<&Record> = durable.iter().filter(|r| r.sequence > checkpoint).collect();
                    prop_assert_eq!(recovery.records.iter().collect::<Vec<_>>(), expected);
                    pending.clear();
                }
                Op::Reopen => {
                    drop(wal);
                    let (reopened, recovery) = Wal::open(options(&dir, segment_bytes)).unwrap();
                    wal = reopened;
                    let expected: Vec<&Record> = durable.iter().filter(|r| r.sequence > checkpoint).collect();
                    prop_assert_eq!(recovery.records.iter().collect::<Vec<_>>(), expected);
                    prop_assert_eq!(recovery.checkpoint, checkpoint);
                    pending.clear();
                }
            }
        }
    }
}

#[test]
fn checkpoints_delete_whole_segments_only_and_the_bound_refuses_appends() {
    let dir = TempDir::new();
    let (mut wal, _) = Wal::open(WalOptions { max_bytes: 4096, ..options(&dir, 256) }).unwrap();
    let mut last = 0;
    loop {
        match wal.append(1, &[7; 100]) {
            Ok(sequence) => last = sequence,
            Err(WalError::Full { limit, .. }) => {
                assert_eq!(limit, 4096);
                break;
            }
            Err(other) => panic!("{other}"),
        }
        wal.commit().unwrap();
    }
    let segments = wal.segments();
    assert!(segments > 3, "{segments}");
    wal.checkpoint(last / 2).unwrap();
    assert!(wal.segments() < segments, "whole segments before the checkpoint are gone");
    wal.append(1, &[7; 100]).expect("room again");
    wal.commit().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open(options(&dir, 256)).unwrap();
    assert_eq!(recovery.records.first().map(|r| r.sequence), Some(last / 2 + 1));
    assert_eq!(recovery.records.last().map(|r| r.sequence), Some(last + 1));
}

#[test]
fn a_segment_file_left_by_a_failed_roll_is_replaced_not_a_dead_end() {
    let dir = TempDir::new();
    let (mut wal, _) = Wal::open(options(&dir, 256)).unwrap();
    wal.append(1, &[7; 300]).unwrap();
    wal.commit().unwrap();
    // What a roll that failed on a full disk leaves: the next segment's file, not in the log.
    std::fs::write(dir.0.join(format!("{:020}.wal", 2)), b"AUGW").unwrap();
    wal.append(1, &[8; 10]).unwrap();
    wal.commit().expect("the roll replaces the leftover file");
    drop(wal);
    let (_, recovery) = Wal::open(options(&dir, 256)).unwrap();
    assert_eq!(recovery.records.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn continuing_after_a_checkpoint_past_the_log_keeps_sequences_unique() {
    let dir = TempDir::new();
    let (mut wal, _) = Wal::open(options(&dir, 256)).unwrap();
    wal.append(1, &[1; 10]).unwrap();
    wal.commit().unwrap();
    // The checkpoint covers sequence 5, but the log holds only 1 (unsynced records lost).
    wal.continue_after(5).unwrap();
    assert_eq!(wal.append(1, &[2; 10]).unwrap(), 6);
    wal.commit().unwrap();
    drop(wal);
    let (_, recovery) = Wal::open(options(&dir, 256)).unwrap();
    assert_eq!(recovery.checkpoint, 5);
    assert_eq!(recovery.records.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![6]);
}

#[test]
fn a_damaged_segment_drops_what_follows_it_and_says_so() {
    let dir = TempDir::new();
    let (mut wal, _) = Wal::open(options(&dir, 128)).unwrap();
    for _ in 0..20 {
        wal.append(0, &[1; 50]).unwrap();
        wal.commit().unwrap();
    }
    drop(wal);
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().path()).collect();
    segments.retain(|p| p.extension().is_some_and(|e| e == "wal"));
    segments.sort();
    assert!(segments.len() >= 4);
    // Flip a byte in the middle of the second segment's first record.
    let mut bytes = fs::read(&segments[1]).unwrap();
    bytes[segment::HEADER.len() + 20] ^= 0xFF;
    fs::write(&segments[1], bytes).unwrap();
    let (wal, recovery) = Wal::open(options(&dir, 128)).unwrap();
    assert!(recovery.torn_bytes > 0);
    assert_eq!(recovery.dropped_segments, segments.len() - 2);
    let kept = recovery.records.len() as u64;
    assert!(kept > 0 && kept < 20);
    assert_eq!(wal.next_sequence(), kept + 1, "the log continues after the last intact record");
}

#[test]
fn concurrent_appends_share_fsyncs_and_all_survive() {
    let dir = TempDir::new();
    let (wal, _) = Wal::open(options(&dir, 1 << 20)).unwrap();
    let group = std::sync::Arc::new(GroupCommit::start(wal, Duration::from_millis(5)).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let mut sequences: Vec<u64> = runtime.block_on(async {
        let tasks: Vec<_> = (0..400u32)
            .map(|i| {
                let group = group.clone();
                tokio::spawn(async move { group.append(2, i.to_le_bytes().to_vec()).await.unwrap() })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    });
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=400).collect::<Vec<u64>>(), "every append acknowledged once");
    let commits = group.stats().commits.load(Ordering::Relaxed);
    assert!(commits < 400, "appends shared commits: {commits} for 400");
    let group = std::sync::Arc::into_inner(group).unwrap();
    drop(group.stop().unwrap());
    let (_, recovery) = Wal::open(options(&dir, 1 << 20)).unwrap();
    assert_eq!(recovery.records.len(), 400);
}
