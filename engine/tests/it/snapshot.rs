//! A partition's state through a snapshot: restoring it mid-stream and going on gives exactly the
//! rollups the uninterrupted state gives; damaged snapshots are refused, never a panic.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use augur_engine::rollup::RollupBuilder;
use augur_engine::snapshot;
use augur_engine::watermark::Watermark;
use augur_engine::window::{Resolution, Windows};
use augur_ingest::config::ModelConfig;
use augur_ingest::{Precision, Router, Writer};
use augur_storage::schema::text_column;
use proptest::prelude::*;

const SECOND: i64 = 1_000_000_000;
const LATENESS: i64 = 5 * SECOND;
const IDLE: i64 = 30 * SECOND;

fn resolutions() -> Vec<Resolution> {
    [10, 60].map(|s| Resolution::new(Duration::from_secs(s))).to_vec()
}

/// One partition's pipeline work, by hand: lateness, windows, closing.
struct State {
    windows: Windows,
    watermark: Watermark,
    out: RollupBuilder,
    emitted: Vec<RecordBatch>,
    /// Series whose windows one feed closes at most, as a partition's round does.
    close_limit: usize,
}

impl State {
    fn new() -> Self {
        let (windows, watermark) = (Windows::new(resolutions()), Watermark::new(LATENESS, IDLE));
        Self { windows, watermark, out: RollupBuilder::default(), emitted: Vec::new(), close_limit: usize::MAX }
    }

    fn restore(bytes: &[u8]) -> Self {
        let (windows, watermark) = snapshot::decode(bytes, resolutions(), (LATENESS, IDLE)).unwrap();
        Self { windows, watermark, out: RollupBuilder::default(), emitted: Vec::new(), close_limit: usize::MAX }
    }

    fn feed(&mut self, writer: &Writer, body: &str) {
        let parsed = writer.parse(
            body.as_bytes(),
            Precision::Nanoseconds,
            0,
            (1, usize::MAX),
            augur_ingest::write::LinePolicy::All,
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        for (_, batch) in &parsed.batches {
            for point in batch.iter() {
                if !self.watermark.is_late(point.time()) {
                    self.windows.add(&point);
                    self.watermark.observe(point.time());
                }
            }
        }
        self.windows.close_at_most(self.watermark.value(), false, &mut self.out, self.close_limit);
        self.emitted.push(self.out.finish().unwrap());
    }

    /// Every row emitted, sorted by (series, field, kind, resolution, window start).
    fn finish(mut self) -> RecordBatch {
        self.windows.close(i64::MAX, true, &mut self.out);
        self.emitted.push(self.out.finish().unwrap());
        let batch = arrow_select::concat::concat_batches(&self.emitted[0].schema(), &self.emitted).unwrap();
        let text = |name| text_column(&batch, name).unwrap();
        let (key, field, kind, resolution) = (text("series_key"), text("field"), text("kind"), text("resolution"));
        let start = batch.column_by_name("window_start").unwrap();
        let start = start.as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_by_key(|&i| {
            let i = i as usize;
            (
                key.value(i).to_owned(),
                field.value(i).to_owned(),
                kind.value(i).to_owned(),
                resolution.value(i).to_owned(),
                start.value(i),
            )
        });
        arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order)).unwrap()
    }
}

fn writer() -> Writer {
    let (router, _receivers) = Router::new(1, 1 << 30);
    let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
    let model = ModelConfig { max_future: Duration::from_secs(u32::MAX.into()), ..ModelConfig::default() };
    Writer::new(Arc::new(router), &model, pool)
}

/// A line of every field kind, for `series` at `time`.
fn line(series: u8, time: i64, kind: u8, value: i32) -> String {
    let field = match kind % 5 {
        0 => format!("f={}", f64::from(value) / 8.0),
        1 => format!("i={value}i"),
        2 => format!("u={}u", value.unsigned_abs()),
        3 => format!("b={}", value % 2 == 0),
        _ => format!("s=\"v{value}\""),
    };
    format!("m,host=h{series} {field},g={value} {time}\n")
}

/// Lines for (series, jitter, kind, value) tuples: times on a 500 ms grid, drifting forward with
/// disorder, so windows close along the way.
fn lines_of(points: &[(u8, i64, u8, i32)]) -> Vec<String> {
    points
        .iter()
        .enumerate()
        .map(|(i, &(series, jitter, kind, value))| {
            line(series, 1_700_000_000 * SECOND + i as i64 * SECOND / 2 + jitter * SECOND / 100, kind, value)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn restoring_a_snapshot_mid_stream_gives_the_same_rollups(
        points in proptest::collection::vec((0u8..6, 0i64..600, any::<u8>(), -1000i32..1000), 1..200),
        cut in 0.0f64..1.0,
    ) {
        let writer = writer();
        let lines = lines_of(&points);
        let split = (lines.len() as f64 * cut) as usize;
        // Right after the cut, a point as old as the first: late for the uninterrupted state once
        // its watermark moved, and it must be late for the restored one too.
        let mut lines = lines;
        lines.insert(split, line(0, 1_700_000_000 * SECOND, 0, 1));
        let mut whole = State::new();
        for chunk in lines[..split].chunks(7) {
            whole.feed(&writer, &chunk.concat());
        }
        let bytes = snapshot::encode(&whole.windows, &whole.watermark);
        let mut restored = State::restore(&bytes);
        // What was emitted before the snapshot is out already; compare what comes after.
        whole.emitted.clear();
        for chunk in lines[split..].chunks(7) {
            whole.feed(&writer, &chunk.concat());
            restored.feed(&writer, &chunk.concat());
        }
        prop_assert_eq!(whole.finish(), restored.finish());
    }

    #[test]
    fn closing_a_few_series_windows_at_a_time_gives_the_same_rollups(
        points in proptest::collection::vec((0u8..6, 0i64..600, any::<u8>(), -1000i32..1000), 1..200),
        limit in 1usize..4,
    ) {
        let writer = writer();
        let lines = lines_of(&points);
        let (mut all, mut sliced) = (State::new(), State { close_limit: limit, ..State::new() });
        for chunk in lines.chunks(7) {
            all.feed(&writer, &chunk.concat());
            sliced.feed(&writer, &chunk.concat());
        }
        prop_assert_eq!(all.finish(), sliced.finish());
    }

    #[test]
    fn damaged_snapshots_are_refused_without_panicking(cut in any::<usize>(), flip in any::<usize>()) {
        let writer = writer();
        let mut state = State::new();
        let body: String = (0..40).map(|i| line((i % 5) as u8, 1_700_000_000 * SECOND + i * SECOND, i as u8, i as i32)).collect();
        state.feed(&writer, &body);
        let bytes = snapshot::encode(&state.windows, &state.watermark);
        prop_assert!(snapshot::decode(&bytes[..cut % bytes.len()], resolutions(), (LATENESS, IDLE)).is_err());
        let mut flipped = bytes.clone();
        flipped[flip % bytes.len()] ^= 0x5A;
        let _ = snapshot::decode(&flipped, resolutions(), (LATENESS, IDLE)); // may decode: no panic is the point
        let other = [60, 3600].map(|s| Resolution::new(Duration::from_secs(s))).to_vec();
        let refused = matches!(snapshot::decode(&bytes, other, (LATENESS, IDLE)), Err(snapshot::SnapshotError::Resolutions { .. }));
        prop_assert!(refused, "other resolutions are refused");
    }
}
