//! Closed windows as Arrow: builds batches in the rollup schema of `augur_storage::schema`.

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Decimal128Builder, Float64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use augur_ingest::SeriesId;
use augur_storage::schema::rollup_schema;
use std::sync::Arc;

use crate::aggregate::{Numeric, Values};
use crate::window::{FieldAggregate, Resolution, SeriesInfo};

/// Quantiles written with every numeric rollup.
const QUANTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];

fn decimal() -> Decimal128Builder {
    Decimal128Builder::new().with_precision_and_scale(38, 0).unwrap_or_default()
}

fn timestamp() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new()
}

/// A text column whose values repeat from row to row, kept once per batch (see
/// `augur_storage::schema`).
type Repeated = StringDictionaryBuilder<Int32Type>;

/// Accumulates rollup rows, column by column.
pub struct RollupBuilder {
    series_id: UInt64Builder,
    series_key: Repeated,
    measurement: Repeated,
    region: Repeated,
    field: Repeated,
    resolution: Repeated,
    window_start: TimestampNanosecondBuilder,
    window_end: TimestampNanosecondBuilder,
    kind: Repeated,
    count: UInt64Builder,
    /// sum, min, max, mean, stddev, first, last.
    floats: [Float64Builder; 7],
    /// int_sum, int_min, int_max, int_first, int_last.
    exact: [Decimal128Builder; 5],
    first_time: TimestampNanosecondBuilder,
    last_time: TimestampNanosecondBuilder,
    true_count: UInt64Builder,
    false_count: UInt64Builder,
    last_string: StringBuilder,
    quantiles: [Float64Builder; 4],
    sketch: BinaryBuilder,
    partial: BooleanBuilder,
    rows: usize,
}

impl std::fmt::Debug for RollupBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollupBuilder").field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl Default for RollupBuilder {
    fn default() -> Self {
        Self {
            series_id: UInt64Builder::new(),
            series_key: Repeated::new(),
            measurement: Repeated::new(),
            region: Repeated::new(),
            field: Repeated::new(),
            resolution: Repeated::new(),
            window_start: timestamp(),
            window_end: timestamp(),
            kind: Repeated::new(),
            count: UInt64Builder::new(),
            floats: std::array::from_fn(|_| Float64Builder::new()),
            exact: std::array::from_fn(|_| decimal()),
            first_time: timestamp(),
            last_time: timestamp(),
            true_count: UInt64Builder::new(),
            false_count: UInt64Builder::new(),
            last_string: StringBuilder::new(),
            quantiles: std::array::from_fn(|_| Float64Builder::new()),
            sketch: BinaryBuilder::new(),
            partial: BooleanBuilder::new(),
            rows: 0,
        }
    }
}

impl RollupBuilder {
    /// Rows appended since the last [`RollupBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one closed window.
    pub fn append(
        &mut self,
        series_id: SeriesId,
        series: &SeriesInfo,
        field: &FieldAggregate,
        resolution: &Resolution,
        start: i64,
        partial: bool,
    ) {
        let agg = &field.aggregate;
        self.series_id.append_value(series_id);
        self.series_key.append_value(&*series.key);
        self.measurement.append_value(&*series.measurement);
        self.region.append_value(&*series.region);
        self.field.append_value(&*field.field);
        self.resolution.append_value(&*resolution.name);
        self.window_start.append_value(start);
        self.window_end.append_value(start.saturating_add(resolution.nanos));
        self.kind.append_value(field.kind.name());
        self.count.append_value(agg.count);
        self.first_time.append_value(agg.first_time);
        self.last_time.append_value(agg.last_time);
        let numeric: Option<&Numeric> = match &agg.values {
            Values::Float(n) => Some(n),
            Values::Exact(e) => Some(&e.0),
            _ => None,
        };
        match numeric {
            Some(n) => {
                let s = &n.stats;
                let stats = [s.sum, s.min, s.max, n.mean, n.stddev(agg.count), s.first, s.last];
                for (builder, value) in self.floats.iter_mut().zip(stats) {
                    builder.append_value(value);
                }
                for (builder, value) in self.quantiles.iter_mut().zip(n.sketch.quantiles(QUANTILES)) {
                    builder.append_option(value);
                }
                self.sketch.append_value(n.sketch.to_bytes());
            }
            None => {
                self.floats.iter_mut().chain(&mut self.quantiles).for_each(Float64Builder::append_null);
                self.sketch.append_null();
            }
        }
        match &agg.values {
            Values::Exact(e) => {
                let exact = [e.1.sum, e.1.min, e.1.max, e.1.first, e.1.last];
                for (builder, value) in self.exact.iter_mut().zip(exact) {
                    builder.append_value(value);
                }
            }
            _ => self.exact.iter_mut().for_each(Decimal128Builder::append_null),
        }
        match &agg.values {
            Values::Boolean { trues, falses } => {
                self.true_count.append_value(*trues);
                self.false_count.append_value(*falses);
            }
            _ => {
                self.true_count.append_null();
                self.false_count.append_null();
            }
        }
        match &agg.values {
            Values::String { last } => self.last_string.append_value(last),
            _ => self.last_string.append_null(),
        }
        self.partial.append_value(partial);
        self.rows += 1;
    }

    /// The pending rows as a batch; the builder starts empty again.
    ///
    /// # Errors
    /// Only if the columns disagree with the schema (a bug).
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.series_id.finish()),
            Arc::new(self.series_key.finish()),
            Arc::new(self.measurement.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.field.finish()),
            Arc::new(self.resolution.finish()),
            Arc::new(self.window_start.finish()),
            Arc::new(self.window_end.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.count.finish()),
        ];
        columns.extend(self.floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.exact.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend([
            Arc::new(self.first_time.finish()) as ArrayRef,
            Arc::new(self.last_time.finish()),
            Arc::new(self.true_count.finish()),
            Arc::new(self.false_count.finish()),
            Arc::new(self.last_string.finish()),
        ]);
        columns.extend(self.quantiles.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend([Arc::new(self.sketch.finish()) as ArrayRef, Arc::new(self.partial.finish())]);
        RecordBatch::try_new(rollup_schema(), columns)
    }
}
