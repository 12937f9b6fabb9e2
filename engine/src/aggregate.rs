//! `Aggregate`: the mergeable state of one (series, field, window).
//!
//! Every statistic merges exactly: counts and sums add, min/max/first/last compare, mean and
//! variance combine by Chan's formula (Welford's update point by point), sketches add bins. So a
//! coarse window computed by merging its fine windows equals one computed from the points.
//! Integer and unsigned fields keep exact integer statistics beside the float ones.

use augur_ingest::FieldValue;
use augur_storage::cache::prefetch;
use augur_storage::sketch::DdSketch;

use crate::snapshot::{Reader, SnapshotError, Writer};

/// The type of a field's values; a field that changes type is aggregated per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// f64 values.
    Float,
    /// i64 values.
    Integer,
    /// u64 values.
    Unsigned,
    /// Booleans.
    Boolean,
    /// Strings.
    String,
}

impl Kind {
    /// The kind of a value.
    pub fn of(value: &FieldValue<&str>) -> Self {
        match value {
            FieldValue::Float(_) => Self::Float,
            FieldValue::Integer(_) => Self::Integer,
            FieldValue::Unsigned(_) => Self::Unsigned,
            FieldValue::Boolean(_) => Self::Boolean,
            FieldValue::String(_) => Self::String,
        }
    }

    /// The name used in output (`float`, `integer`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Integer => "integer",
            Self::Unsigned => "unsigned",
            Self::Boolean => "boolean",
            Self::String => "string",
        }
    }
}

/// Sum, extremes and the first and last value: the statistics kept both as f64 and, for integer
/// and unsigned fields, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats<T> {
    /// Sum.
    pub sum: T,
    /// Smallest value.
    pub min: T,
    /// Largest value.
    pub max: T,
    /// Value with the smallest time.
    pub first: T,
    /// Value with the largest time.
    pub last: T,
}

impl<T: Copy + PartialOrd + std::ops::AddAssign> Stats<T> {
    fn new(v: T) -> Self {
        Self { sum: v, min: v, max: v, first: v, last: v }
    }

    fn add(&mut self, v: T, is_first: bool, is_last: bool) {
        self.merge(&Self::new(v), is_first, is_last);
    }

    fn merge(&mut self, other: &Self, take_first: bool, take_last: bool) {
        self.sum += other.sum;
        if other.min < self.min {
            self.min = other.min;
        }
        if other.max > self.max {
            self.max = other.max;
        }
        if take_first {
            self.first = other.first;
        }
        if take_last {
            self.last = other.last;
        }
    }
}

/// Statistics of numeric values, all as f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Numeric {
    /// Sum, extremes, first and last.
    pub stats: Stats<f64>,
    /// Running mean (Welford).
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford's M2).
    pub m2: f64,
    /// Quantile sketch.
    pub sketch: DdSketch,
}

/// Exact statistics of integer or unsigned values (an i128 sum fits any count of 64-bit values up
/// to 2^64).
pub type Exact = Stats<i128>;

/// What is kept per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Float fields: the common case, kept inline (one allocation fewer per window).
    Float(Numeric),
    /// Integer and unsigned fields: float statistics plus exact ones.
    Exact(Box<(Numeric, Exact)>),
    /// Boolean fields.
    Boolean {
        /// `true` values.
        trues: u64,
        /// `false` values.
        falses: u64,
    },
    /// String fields.
    String {
        /// The value with the largest time.
        last: Box<str>,
    },
}

/// The state of one (series, field, window).
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Values counted.
    pub count: u64,
    /// Smallest event time.
    pub first_time: i64,
    /// Largest event time.
    pub last_time: i64,
    /// Per-kind statistics.
    pub values: Values,
}

impl Aggregate {
    /// Asks the CPU for what [`Aggregate::add`] will read beyond the aggregate itself: the
    /// sketch's bins where they spilled to the heap, the boxed statistics of integer fields.
    pub fn prefetch(&self) {
        match &self.values {
            Values::Float(numeric) => numeric.sketch.prefetch(),
            Values::Exact(exact) => prefetch(std::slice::from_ref(exact.as_ref())),
            Values::Boolean { .. } | Values::String { .. } => {}
        }
    }
}

impl Numeric {
    fn new(v: f64) -> Self {
        let mut sketch = DdSketch::new();
        sketch.add(v);
        Self { stats: Stats::new(v), mean: v, m2: 0.0, sketch }
    }

    /// Welford's update; `n` is the count including `v`.
    fn add(&mut self, v: f64, n: u64, is_first: bool, is_last: bool) {
        self.stats.add(v, is_first, is_last);
        let delta = v - self.mean;
        self.mean += delta / n as f64;
        self.m2 += delta * (v - self.mean);
        self.sketch.add(v);
    }

    /// Chan's parallel combination; `n_self` and `n_other` are the counts before merging.
    fn merge(&mut self, other: &Numeric, n_self: u64, n_other: u64, take_first: bool, take_last: bool) {
        let n = (n_self + n_other) as f64;
        let delta = other.mean - self.mean;
        self.mean += delta * n_other as f64 / n;
        self.m2 += other.m2 + delta * delta * n_self as f64 * n_other as f64 / n;
        self.stats.merge(&other.stats, take_first, take_last);
        self.sketch.merge(&other.sketch);
    }

    /// Population standard deviation of `n` values.
    pub fn stddev(&self, n: u64) -> f64 {
        if n == 0 {
            0.0
        } else {
            (self.m2 / n as f64).max(0.0).sqrt()
        }
    }
}

impl Aggregate {
    /// The aggregate of one value at `time`.
    pub fn new(value: &FieldValue<&str>, time: i64) -> Self {
        let values = match *value {
            FieldValue::Float(v) => Values::Float(Numeric::new(v)),
            FieldValue::Integer(v) => Values::Exact(Box::new((Numeric::new(v as f64), Exact::new(i128::from(v))))),
            FieldValue::Unsigned(v) => Values::Exact(Box::new((Numeric::new(v as f64), Exact::new(i128::from(v))))),
            FieldValue::Boolean(b) => Values::Boolean { trues: u64::from(b), falses: u64::from(!b) },
            FieldValue::String(s) => Values::String { last: s.into() },
        };
        Self { count: 1, first_time: time, last_time: time, values }
    }

    /// Adds one value of the same kind at `time`. A value at the same time as the current first
    /// (last) one does not replace it (does replace it): arrival order breaks ties.
    pub fn add(&mut self, value: &FieldValue<&str>, time: i64) {
        self.count += 1;
        let is_first = time < self.first_time;
        let is_last = time >= self.last_time;
        self.first_time = self.first_time.min(time);
        self.last_time = self.last_time.max(time);
        match (&mut self.values, *value) {
            (Values::Float(n), FieldValue::Float(v)) => n.add(v, self.count, is_first, is_last),
            (Values::Exact(e), FieldValue::Integer(v)) => {
                e.0.add(v as f64, self.count, is_first, is_last);
                e.1.add(i128::from(v), is_first, is_last);
            }
            (Values::Exact(e), FieldValue::Unsigned(v)) => {
                e.0.add(v as f64, self.count, is_first, is_last);
                e.1.add(i128::from(v), is_first, is_last);
            }
            (Values::Boolean { trues, falses }, FieldValue::Boolean(b)) => {
                *trues += u64::from(b);
                *falses += u64::from(!b);
            }
            (Values::String { last }, FieldValue::String(s)) if is_last => *last = s.into(),
            // Callers key aggregates by kind, so kinds always match; a mismatch is only counted.
            _ => {}
        }
    }

    /// Merges `other` (same kind, a disjoint set of values) into `self`. Ties on first (last)
    /// time keep `self`'s (take `other`'s), as if `other`'s values arrived later.
    pub fn merge(&mut self, other: &Aggregate) {
        let take_first = other.first_time < self.first_time;
        let take_last = other.last_time >= self.last_time;
        let (n_self, n_other) = (self.count, other.count);
        self.count += other.count;
        self.first_time = self.first_time.min(other.first_time);
        self.last_time = self.last_time.max(other.last_time);
        match (&mut self.values, &other.values) {
            (Values::Float(a), Values::Float(b)) => a.merge(b, n_self, n_other, take_first, take_last),
            (Values::Exact(a), Values::Exact(b)) => {
                a.0.merge(&b.0, n_self, n_other, take_first, take_last);
                a.1.merge(&b.1, take_first, take_last);
            }
            (Values::Boolean { trues, falses }, Values::Boolean { trues: t, falses: f }) => {
                *trues += t;
                *falses += f;
            }
            (Values::String { last }, Values::String { last: other_last }) if take_last => last.clone_from(other_last),
            _ => {}
        }
    }

    /// Heap bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match &self.values {
            Values::Float(n) => n.sketch.heap_bytes(),
            Values::Exact(e) => size_of::<(Numeric, Exact)>() + e.0.sketch.heap_bytes(),
            Values::Boolean { .. } => 0,
            Values::String { last } => last.len(),
        }
    }
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Float, Kind::Integer, Kind::Unsigned, Kind::Boolean, Kind::String];

    /// Its byte in snapshots.
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|&k| k == self).unwrap_or(0) as u8
    }

    /// The kind of a snapshot byte.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl Numeric {
    fn encode(&self, w: &mut Writer) {
        let s = &self.stats;
        for v in [s.sum, s.min, s.max, s.first, s.last, self.mean, self.m2] {
            w.f64(v);
        }
        w.bytes(&self.sketch.to_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let mut v = [0.0; 7];
        for slot in &mut v {
            *slot = r.f64()?;
        }
        let at = r.corrupt();
        let sketch = DdSketch::from_bytes(r.bytes()?).map_err(|_| at)?;
        let stats = Stats { sum: v[0], min: v[1], max: v[2], first: v[3], last: v[4] };
        Ok(Self { stats, mean: v[5], m2: v[6], sketch })
    }
}

impl Aggregate {
    /// Writes this state into a snapshot.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.count);
        w.i64(self.first_time);
        w.i64(self.last_time);
        match &self.values {
            Values::Float(numeric) => {
                w.u8(0);
                numeric.encode(w);
            }
            Values::Exact(exact) => {
                w.u8(1);
                exact.0.encode(w);
                let s = &exact.1;
                for v in [s.sum, s.min, s.max, s.first, s.last] {
                    w.i128(v);
                }
            }
            Values::Boolean { trues, falses } => {
                w.u8(2);
                w.varint(*trues);
                w.varint(*falses);
            }
            Values::String { last } => {
                w.u8(3);
                w.str(last);
            }
        }
    }

    /// Reads what [`Aggregate::encode`] wrote.
    ///
    /// # Errors
    /// When the bytes are damaged.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let (count, first_time, last_time) = (r.varint()?, r.i64()?, r.i64()?);
        let values = match r.u8()? {
            0 => Values::Float(Numeric::decode(r)?),
            1 => {
                let numeric = Numeric::decode(r)?;
                let mut v = [0i128; 5];
                for slot in &mut v {
                    *slot = r.i128()?;
                }
                Values::Exact(Box::new((numeric, Stats { sum: v[0], min: v[1], max: v[2], first: v[3], last: v[4] })))
            }
            2 => Values::Boolean { trues: r.varint()?, falses: r.varint()? },
            3 => Values::String { last: r.str()?.into() },
            _ => return Err(r.corrupt()),
        };
        Ok(Self { count, first_time, last_time, values })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn aggregate(values: &[(i64, f64)]) -> Aggregate {
        let mut agg = Aggregate::new(&FieldValue::Float(values[0].1), values[0].0);
        for &(t, v) in &values[1..] {
            agg.add(&FieldValue::Float(v), t);
        }
        agg
    }

    fn numeric(agg: &Aggregate) -> &Numeric {
        match &agg.values {
            Values::Float(n) => n,
            other => panic!("not float: {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn merging_parts_equals_aggregating_the_whole(
            values in proptest::collection::vec((0i64..1000, -1e3..1e3f64), 2..60),
            split in any::<prop::sample::Index>(),
        ) {
            let at = 1 + split.index(values.len() - 1);
            let whole = aggregate(&values);
            let mut merged = aggregate(&values[..at]);
            merged.merge(&aggregate(&values[at..]));
            let (w, m) = (numeric(&whole), numeric(&merged));
            prop_assert_eq!(whole.count, merged.count);
            prop_assert_eq!((whole.first_time, whole.last_time), (merged.first_time, merged.last_time));
            prop_assert_eq!((w.stats.min, w.stats.max, w.stats.first, w.stats.last), (m.stats.min, m.stats.max, m.stats.first, m.stats.last));
            prop_assert!((w.stats.sum - m.stats.sum).abs() <= 1e-9 * (1.0 + w.stats.sum.abs()));
            prop_assert!((w.mean - m.mean).abs() <= 1e-9 * (1.0 + w.mean.abs()));
            prop_assert!((w.m2 - m.m2).abs() <= 1e-6 * (1.0 + w.m2.abs()));
            prop_assert_eq!(w.sketch.quantile(0.9), m.sketch.quantile(0.9));
        }
    }

    #[test]
    fn integers_are_exact_beyond_f64() {
        let big = i64::MAX - 1;
        let mut agg = Aggregate::new(&FieldValue::Integer(big), 1);
        agg.add(&FieldValue::Integer(big), 2);
        agg.add(&FieldValue::Integer(-3), 0);
        let Values::Exact(e) = &agg.values else { panic!() };
        assert_eq!(e.1.sum, 2 * i128::from(big) - 3);
        assert_eq!((e.1.min, e.1.max, e.1.first, e.1.last), (-3, i128::from(big), -3, i128::from(big)));
        let mut u = Aggregate::new(&FieldValue::Unsigned(u64::MAX), 5);
        u.merge(&Aggregate::new(&FieldValue::Unsigned(u64::MAX), 6));
        let Values::Exact(e) = &u.values else { panic!() };
        assert_eq!(e.1.sum, 2 * i128::from(u64::MAX));
    }

    #[test]
    fn booleans_and_strings() {
        let mut b = Aggregate::new(&FieldValue::Boolean(true), 1);
        b.add(&FieldValue::Boolean(false), 2);
        b.add(&FieldValue::Boolean(true), 3);
        assert_eq!(b.values, Values::Boolean { trues: 2, falses: 1 });
        let mut s = Aggregate::new(&FieldValue::String("b"), 5);
        s.add(&FieldValue::String("a"), 1);
        s.add(&FieldValue::String("c"), 9);
        s.add(&FieldValue::String("x"), 2);
        assert_eq!(s.values, Values::String { last: "c".into() });
        assert_eq!((s.count, s.first_time, s.last_time), (4, 1, 9));
    }
}
