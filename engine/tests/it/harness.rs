//! A router, a writer and the partition tasks of the real pipeline, stepped by hand, writing to a
//! memory sink; and rollup rows read back out of the Arrow batches.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Array, BinaryArray, BooleanArray, Float64Array, RecordBatch, TimestampNanosecondArray, UInt64Array};
use augur_engine::pipeline::{PartitionSnapshot, PartitionTotals, Partitions, PipelineConfig};
use augur_engine::predict::events::PredictConfig;
use augur_engine::window::Resolution;
use augur_ingest::config::ModelConfig;
use augur_ingest::{Precision, Router, Writer};
use augur_storage::schema::text_column;
use augur_storage::sink::{MemorySink, Sink};

pub(crate) const SECOND: i64 = 1_000_000_000;

pub(crate) struct Harness {
    pub(crate) writer: Option<Writer>,
    pub(crate) partitions: Partitions,
    pub(crate) sink: Arc<MemorySink>,
}

pub(crate) fn config(resolutions: &[i64], lateness: i64, idle_timeout: i64) -> PipelineConfig {
    PipelineConfig {
        tick: Duration::from_millis(1),
        resolutions: resolutions.iter().map(|&n| Resolution::new(Duration::from_nanos(n as u64))).collect(),
        allowed_lateness: lateness,
        idle_timeout,
        predict: Arc::new(PredictConfig::default()),
    }
}

impl Harness {
    pub(crate) fn new(partitions: usize, config: &PipelineConfig) -> Self {
        let sink = Arc::new(MemorySink::default());
        Self::with_sink(partitions, config, sink.clone(), sink)
    }

    /// A harness whose outputs go to `outputs`; `sink` is what [`Harness::rows`] reads.
    pub(crate) fn with_sink(
        partitions: usize,
        config: &PipelineConfig,
        sink: Arc<MemorySink>,
        outputs: Arc<dyn Sink>,
    ) -> Self {
        let (router, receivers) = Router::new(partitions, 1 << 30);
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap());
        // No max-future check here: tests choose their own event times.
        let model = ModelConfig { max_future: Duration::from_secs(u32::MAX.into()), ..ModelConfig::default() };
        let writer = Writer::new(Arc::new(router), &model, pool);
        let partitions = Partitions::new(receivers, config, outputs);
        Self { writer: Some(writer), partitions, sink }
    }

    /// Partitions that hand their state to `checkpoints` at every barrier.
    pub(crate) fn checkpointed(mut self, checkpoints: &crossbeam_channel::Sender<PartitionSnapshot>) -> Self {
        self.partitions = self.partitions.with_checkpoints(checkpoints);
        self
    }

    /// Sends a checkpoint barrier to every partition.
    pub(crate) fn barrier(&self, epoch: u64) {
        let router = self.writer.as_ref().expect("still writing").router();
        for partition in 0..router.partitions() {
            router.send_barrier(partition, augur_ingest::Barrier { epoch, sequence: epoch }).unwrap();
        }
    }

    /// Parses and admits one body of line protocol (ns timestamps); every line must be good.
    pub(crate) fn write(&self, body: &str) {
        let writer = self.writer.as_ref().expect("still writing");
        let mut parsed = writer.parse(
            body.as_bytes(),
            Precision::Nanoseconds,
            0,
            (1, usize::MAX),
            augur_ingest::write::LinePolicy::All,
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        writer.admit(&mut parsed).unwrap();
    }

    pub(crate) fn tick(&mut self, now: i64) {
        self.partitions.tick(now);
    }

    /// Closes the channels, drains them and flushes every open window, as shutdown does.
    pub(crate) fn finish(&mut self, now: i64) -> Vec<PartitionTotals> {
        self.writer = None;
        while !self.partitions.finished() {
            self.partitions.tick(now);
        }
        self.partitions.flush();
        self.partitions.stats().snapshot()
    }

    pub(crate) fn rows(&self) -> Vec<Row> {
        self.sink.rollup_batches().iter().flat_map(rows_of).collect()
    }

    pub(crate) fn raw_rows(&self) -> usize {
        self.sink.raw_batches().iter().map(|(_, b)| b.num_rows()).sum()
    }
}

/// The columns of a rollup row the tests compare.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) series_key: String,
    pub(crate) field: String,
    pub(crate) resolution: String,
    pub(crate) start: i64,
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) first: f64,
    pub(crate) last: f64,
    pub(crate) quantiles: [f64; 4],
    pub(crate) sketch: Vec<u8>,
    pub(crate) partial: bool,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).unwrap_or_else(|| panic!("column {name}"))
}

fn rows_of(batch: &RecordBatch) -> Vec<Row> {
    let text = |name| text_column(batch, name).unwrap_or_else(|e| panic!("{e}"));
    let float = |name| column::<Float64Array>(batch, name);
    let (key, field, resolution) = (text("series_key"), text("field"), text("resolution"));
    let start = column::<TimestampNanosecondArray>(batch, "window_start");
    let count = column::<UInt64Array>(batch, "count");
    let sketch = column::<BinaryArray>(batch, "sketch");
    let partial = column::<BooleanArray>(batch, "partial");
    (0..batch.num_rows())
        .map(|i| Row {
            series_key: key.value(i).to_owned(),
            field: field.value(i).to_owned(),
            resolution: resolution.value(i).to_owned(),
            start: start.value(i),
            count: count.value(i),
            sum: float("sum").value(i),
            min: float("min").value(i),
            max: float("max").value(i),
            first: float("first").value(i),
            last: float("last").value(i),
            quantiles: ["p50", "p90", "p95", "p99"].map(|q| float(q).value(i)),
            sketch: sketch.value(i).to_vec(),
            partial: partial.value(i),
        })
        .collect()
}
