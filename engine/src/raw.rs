//! Raw points as Arrow: every accepted point (late ones too) leaves the pipeline in wide batches,
//! one per (measurement, region, UTC hour), in the raw layout of `augur_storage::schema`.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampNanosecondBuilder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType};
use augur_ingest::{FieldValue, PointBatch, PointView};
use augur_storage::schema::{raw_schema, RawKey};

use crate::aggregate::Kind;

const HOUR: i64 = 3_600_000_000_000;

/// A typed, nullable column under construction.
enum Column {
    Float(Float64Builder),
    Integer(Int64Builder),
    Unsigned(UInt64Builder),
    Boolean(BooleanBuilder),
    String(StringBuilder),
}

impl Column {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Float => Self::Float(Float64Builder::new()),
            Kind::Integer => Self::Integer(Int64Builder::new()),
            Kind::Unsigned => Self::Unsigned(UInt64Builder::new()),
            Kind::Boolean => Self::Boolean(BooleanBuilder::new()),
            Kind::String => Self::String(StringBuilder::new()),
        }
    }

    fn builder(&mut self) -> &mut dyn ArrayBuilder {
        match self {
            Self::Float(b) => b,
            Self::Integer(b) => b,
            Self::Unsigned(b) => b,
            Self::Boolean(b) => b,
            Self::String(b) => b,
        }
    }

    fn push(&mut self, value: &FieldValue<&str>) {
        match (self, *value) {
            (Self::Float(b), FieldValue::Float(v)) => b.append_value(v),
            (Self::Integer(b), FieldValue::Integer(v)) => b.append_value(v),
            (Self::Unsigned(b), FieldValue::Unsigned(v)) => b.append_value(v),
            (Self::Boolean(b), FieldValue::Boolean(v)) => b.append_value(v),
            (Self::String(b), FieldValue::String(v)) => b.append_value(v),
            // Columns are chosen by kind, so this cannot happen; a null keeps the row aligned.
            (column, _) => column.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Self::Float(b) => b.append_null(),
            Self::Integer(b) => b.append_null(),
            Self::Unsigned(b) => b.append_null(),
            Self::Boolean(b) => b.append_null(),
            Self::String(b) => b.append_null(),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Self::Float(_) => DataType::Float64,
            Self::Integer(_) => DataType::Int64,
            Self::Unsigned(_) => DataType::UInt64,
            Self::Boolean(_) => DataType::Boolean,
            Self::String(_) => DataType::Utf8,
        }
    }
}

/// The batch of one (measurement, region, hour) under construction.
struct Group {
    key: RawKey,
    rows: usize,
    time: TimestampNanosecondBuilder,
    series: UInt64Builder,
    tags: Vec<(String, StringBuilder)>,
    /// Column name, field name, kind, column.
    fields: Vec<(String, String, Kind, Column)>,
}

impl Group {
    fn new(key: RawKey) -> Self {
        Self {
            key,
            rows: 0,
            time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            series: UInt64Builder::new(),
            tags: Vec::new(),
            fields: Vec::new(),
        }
    }

    fn push(&mut self, point: &PointView<'_>) {
        let rows = self.rows;
        self.time.append_value(point.time());
        self.series.append_value(point.series_id());
        for (key, value) in point.tags() {
            let column = match self.tags.iter().position(|(name, _)| name == key) {
                Some(i) => i,
                None => {
                    let mut builder = StringBuilder::new();
                    (0..rows).for_each(|_| builder.append_null());
                    self.tags.push((key.to_owned(), builder));
                    self.tags.len() - 1
                }
            };
            self.tags[column].1.append_value(value);
        }
        for (name, value) in point.fields() {
            let kind = Kind::of(&value);
            let column = match self.fields.iter().position(|(_, field, k, _)| field == name && *k == kind) {
                Some(i) => i,
                None => {
                    let mut column = Column::new(kind);
                    (0..rows).for_each(|_| column.push_null());
                    // The first kind of a field names the column; another kind gets a suffix.
                    let taken = self.fields.iter().any(|(column_name, ..)| column_name == name);
                    let column_name = if taken { format!("{name}::{}", kind.name()) } else { name.to_owned() };
                    self.fields.push((column_name, name.to_owned(), kind, column));
                    self.fields.len() - 1
                }
            };
            self.fields[column].3.push(&value);
        }
        self.rows += 1;
        for (_, builder) in &mut self.tags {
            if builder.len() < self.rows {
                builder.append_null();
            }
        }
        for (.., column) in &mut self.fields {
            if column.builder().len() < self.rows {
                column.push_null();
            }
        }
    }

    fn finish(mut self) -> Result<(RawKey, RecordBatch), ArrowError> {
        let schema = raw_schema(
            self.tags.iter().map(|(name, _)| name.clone()),
            self.fields.iter().map(|(name, _, _, column)| (name.clone(), column.data_type())),
        );
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.time.finish()), Arc::new(self.series.finish())];
        columns.extend(self.tags.iter_mut().map(|(_, b)| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.fields.iter_mut().map(|(.., column)| column.builder().finish()));
        Ok((self.key, RecordBatch::try_new(schema, columns)?))
    }
}

/// Splits the points of `batches` into raw batches by (measurement, region, hour), keeping
/// arrival order within each.
///
/// # Errors
/// Only if a batch disagrees with its own schema (a bug).
pub fn raw_batches(batches: &[PointBatch]) -> Result<Vec<(RawKey, RecordBatch)>, ArrowError> {
    let mut groups: Vec<Group> = Vec::new();
    let mut last = 0;
    for point in batches.iter().flat_map(PointBatch::iter) {
        let hour_start = point.time().div_euclid(HOUR) * HOUR;
        let matches = |g: &Group| {
            g.key.hour_start == hour_start && g.key.region == point.region() && g.key.measurement == point.measurement()
        };
        // Consecutive points usually share a group: check the last one used first.
        let index = match groups.get(last) {
            Some(g) if matches(g) => last,
            _ => match groups.iter().position(matches) {
                Some(i) => i,
                None => {
                    groups.push(Group::new(RawKey {
                        measurement: point.measurement().to_owned(),
                        region: point.region().to_owned(),
                        hour_start,
                    }));
                    groups.len() - 1
                }
            },
        };
        groups[index].push(&point);
        last = index;
    }
    groups.into_iter().map(Group::finish).collect()
}
