//! `PointBatch`: the columnar unit that travels from the parser through a partition channel.
//!
//! One batch holds many points of one partition. All their text (measurements, tags, field keys,
//! string values, unescaped) lives in one buffer and the points, tags and fields in three flat
//! vectors, so building a batch of thousands of points costs a handful of allocations, and moving
//! it between threads costs a pointer copy.

use std::ops::Range;

use crate::line_protocol::ParsedLine;
use crate::point::{FieldValue, Point};
use crate::series::SeriesId;

/// A byte range of a batch's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    series_id: SeriesId,
    time: i64,
    measurement: Span,
    region: Span,
    /// End (exclusive) of this point's tags in `tags`; the start is the previous point's end.
    tags_end: u32,
    /// End (exclusive) of this point's fields in `fields`.
    fields_end: u32,
}

/// A batch of points bound for one partition.
#[derive(Debug, Clone, Default)]
pub struct PointBatch {
    /// Invariant: valid UTF-8, and every span of this batch lies on character boundaries. Only
    /// text from validated lines is appended, whole names at a time.
    text: Vec<u8>,
    entries: Vec<Entry>,
    tags: Vec<(Span, Span)>,
    fields: Vec<(Span, FieldValue<Span>)>,
    /// Where the default region's text is, once a point without a region tag needed it.
    default_region: Option<Span>,
}

/// What a batch needs to know to place points in regions.
#[derive(Debug, Clone)]
pub struct RegionRule {
    /// The tag key whose value is the region (unescaped).
    pub tag: String,
    /// The region of points without that tag.
    pub default: String,
}

impl PointBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no point.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of field values over all points.
    pub fn value_count(&self) -> usize {
        self.fields.len()
    }

    /// Heap memory held by the batch, in bytes: what admission control charges for it.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.entries.capacity() * size_of::<Entry>()
            + self.tags.capacity() * size_of::<(Span, Span)>()
            + self.fields.capacity() * size_of::<(Span, FieldValue<Span>)>()
    }

    /// Appends a parsed line as one point.
    pub fn push_line(&mut self, line: &ParsedLine<'_, '_>, series_id: SeriesId, regions: &RegionRule) {
        let measurement = self.push_text(|out| line.measurement.unescape_name_into(out));
        let mut region = None;
        for (key, value) in line.tags {
            let key_span = self.push_text(|out| key.unescape_name_into(out));
            let value_span = self.push_text(|out| value.unescape_name_into(out));
            if self.str(key_span) == regions.tag {
                region = Some(value_span);
            }
            self.tags.push((key_span, value_span));
        }
        for (key, value) in line.fields {
            let key_span = self.push_text(|out| key.unescape_name_into(out));
            let value = value.map_string(|s| self.push_text(|out| s.unescape_string_into(out)));
            self.fields.push((key_span, value));
        }
        let region = match (region, self.default_region) {
            (Some(span), _) | (None, Some(span)) => span,
            (None, None) => {
                let span = self.push_text(|out| out.extend_from_slice(regions.default.as_bytes()));
                self.default_region = Some(span);
                span
            }
        };
        self.entries.push(Entry {
            series_id,
            time: line.time,
            measurement,
            region,
            tags_end: to_u32(self.tags.len()),
            fields_end: to_u32(self.fields.len()),
        });
    }

    /// Keeps only the points whose series `keep` says, in order; their text stays where it is.
    pub fn retain_series(&mut self, keep: impl Fn(SeriesId) -> bool) {
        let (mut entries, mut tags, mut fields) = (Vec::new(), Vec::new(), Vec::new());
        for (index, entry) in self.entries.iter().enumerate() {
            if keep(entry.series_id) {
                tags.extend_from_slice(&self.tags[self.range(index, |e| e.tags_end)]);
                fields.extend_from_slice(&self.fields[self.range(index, |e| e.fields_end)]);
                entries.push(Entry { tags_end: to_u32(tags.len()), fields_end: to_u32(fields.len()), ..entry.clone() });
            }
        }
        (self.entries, self.tags, self.fields) = (entries, tags, fields);
    }

    /// The points of this batch, in arrival order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PointView<'_>> + '_ {
        (0..self.entries.len()).map(move |index| PointView { batch: self, index })
    }

    fn push_text(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Span {
        let start = to_u32(self.text.len());
        write(&mut self.text);
        Span { start, end: to_u32(self.text.len()) }
    }

    fn str(&self, span: Span) -> &str {
        let bytes = &self.text[span.start as usize..span.end as usize];
        // SAFETY: see the invariant on `text`: spans cover whole names cut from validated UTF-8 at
        // ASCII delimiters, and unescaping removes only ASCII backslashes.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    fn range(&self, index: usize, end_of: impl Fn(&Entry) -> u32) -> Range<usize> {
        let start = index.checked_sub(1).map_or(0, |prev| end_of(&self.entries[prev]));
        start as usize..end_of(&self.entries[index]) as usize
    }
}

/// An offset into a batch.
///
/// # Panics
/// Past 4 GiB. A batch holds text from one parsed chunk, at most one request body (limited to
/// 1 GiB by the config validation) or one TCP read with its partial line, so offsets fit in 32 bits.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a batch's text stays under 4 GiB")
}

/// One point of a batch.
#[derive(Debug, Clone, Copy)]
pub struct PointView<'b> {
    batch: &'b PointBatch,
    index: usize,
}

impl<'b> PointView<'b> {
    fn entry(&self) -> &'b Entry {
        &self.batch.entries[self.index]
    }

    /// The series id.
    pub fn series_id(&self) -> SeriesId {
        self.entry().series_id
    }

    /// Nanoseconds since the Unix epoch.
    pub fn time(&self) -> i64 {
        self.entry().time
    }

    /// The measurement.
    pub fn measurement(&self) -> &'b str {
        self.batch.str(self.entry().measurement)
    }

    /// The region: the region tag's value, or the default region.
    pub fn region(&self) -> &'b str {
        self.batch.str(self.entry().region)
    }

    /// Tags, sorted by key.
    pub fn tags(&self) -> impl ExactSizeIterator<Item = (&'b str, &'b str)> + 'b {
        let batch = self.batch;
        batch.tags[batch.range(self.index, |e| e.tags_end)].iter().map(move |&(k, v)| (batch.str(k), batch.str(v)))
    }

    /// Fields, in input order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&'b str, FieldValue<&'b str>)> + 'b {
        let batch = self.batch;
        batch.fields[batch.range(self.index, |e| e.fields_end)]
            .iter()
            .map(move |&(k, v)| (batch.str(k), v.map_string(|s| batch.str(s))))
    }

    /// An owned copy of the point.
    pub fn to_point(&self) -> Point {
        Point {
            measurement: self.measurement().to_owned(),
            tags: self.tags().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            fields: self.fields().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            time: self.time(),
        }
    }
}
