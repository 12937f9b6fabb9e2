//! A partition's copy of its state at a checkpoint barrier: taken in the partition's round, then
//! encoded elsewhere while the partition goes on. The copy shares each series' state with the
//! partition until one of them changes it (copy on write), so what the partition does after the
//! barrier must never show in the copy.

use augur_engine::pipeline::PartitionSnapshot;
use augur_engine::snapshot::Writer;

use crate::harness::{config, Harness, SECOND};

fn encoded(snapshot: &PartitionSnapshot) -> Vec<u8> {
    let mut w = Writer::default();
    snapshot.state.clone().encode_into(&mut w);
    w.into_bytes()
}

#[test]
fn a_checkpoint_copy_keeps_the_state_at_its_barrier_while_the_partitions_go_on() {
    let config = config(&[10 * SECOND, 60 * SECOND], 5 * SECOND, 3600 * SECOND);
    let (checkpoints, copies) = crossbeam_channel::unbounded();
    let mut harness = Harness::new(2, &config).checkpointed(&checkpoints);
    let points = |base: i64, value: f64| -> String {
        (0..200).map(|h| format!("cpu,host=h{h} usage={} {}\n", value + h as f64, base + h * 1_000_000)).collect()
    };
    harness.write(&points(SECOND, 1.0));
    harness.tick(0);
    harness.barrier(1);
    harness.tick(0);
    let mut at_barrier: Vec<PartitionSnapshot> = copies.try_iter().collect();
    at_barrier.sort_by_key(|s| s.partition);
    assert_eq!(at_barrier.len(), 2, "each partition handed its copy at the barrier");
    let before: Vec<Vec<u8>> = at_barrier.iter().map(encoded).collect();

    // The same series get new points (changing their open windows and detectors), and new series
    // arrive; a window closes and merges into the coarser one.
    harness.write(&points(3 * SECOND, 50.0));
    harness.write(&(0..50).map(|h| format!("mem,host=n{h} used={h} {}\n", 4 * SECOND)).collect::<String>());
    harness.tick(0);
    harness.write(&points(20 * SECOND, 90.0));
    harness.tick(0);
    let after: Vec<Vec<u8>> = at_barrier.iter().map(encoded).collect();
    assert_eq!(before, after, "the copies still hold exactly the state at the barrier");

    // The partitions themselves moved on: their next copies differ.
    harness.barrier(2);
    harness.tick(0);
    let mut next: Vec<PartitionSnapshot> = copies.try_iter().collect();
    next.sort_by_key(|s| s.partition);
    let next: Vec<Vec<u8>> = next.iter().map(encoded).collect();
    assert_eq!(next.len(), 2);
    for (partition, (old, new)) in before.iter().zip(&next).enumerate() {
        assert_ne!(old, new, "partition {partition} changed after the barrier");
    }
}
