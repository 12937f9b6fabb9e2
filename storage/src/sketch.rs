//! `DdSketch`: a mergeable quantile sketch with 1 % relative accuracy (DDSketch, Masson, Rim and
//! Lee, VLDB 2019), and its byte encoding.
//!
//! A value `v > 0` is counted in bin `ceil(log_γ v)` with `γ = (1 + α) / (1 − α)`; the bin's
//! representative `2γ^i / (γ + 1)` is within `α·v` of every value in it, so any quantile is
//! returned within relative error `α`. Negative values use a second store on `|v|`; values within
//! `MIN_INDEXABLE` of zero are counted as zero. Merging adds bin counts, so the merge of two
//! sketches equals the sketch of the union.
//!
//! Written here rather than taken from `sketches-ddsketch` for memory: telemetry windows hold a
//! sketch per (series, field, window), and that crate keeps 8-byte counts over a dense range.
//! Here counts start at one byte per bin, up to 24 bins kept inside the sketch itself, and widen
//! only when a bin overflows (see `docs/performance.md` for the measured bytes per series and
//! field).

use std::fmt;

use smallvec::SmallVec;

use crate::cache::prefetch;

/// Relative accuracy of every sketch: quantiles are within 1 % of the true value.
pub const ALPHA: f64 = 0.01;
/// Bins per store at most; past it the bins nearest zero are merged (only quantiles of values
/// nearer zero than the lowest kept bin lose accuracy; 2048 bins span 18 orders of magnitude).
const MAX_BINS: usize = 2048;
/// Magnitudes below this count as zero (and come back as 0: the one exception to the 1 % bound).
const MIN_INDEXABLE: f64 = 1e-9;
/// Encoding version: the first byte of [`DdSketch::to_bytes`].
const VERSION: u8 = 1;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

fn index_of(magnitude: f64) -> i32 {
    // ln γ computed once per call is cheap next to ln(v); the compiler hoists it in loops.
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

fn value_of(index: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(index) / (g + 1.0)
}

/// One-byte bins kept inside the sketch before they spill to the heap. A window's bins are
/// updated for every value: on the heap they were a cache miss per value of their own (14 % of
/// the server's CPU under `augur loadgen`, `perf record`); inline they share the aggregate's
/// cache lines. 24 bins hold the range of 80 % of loadgen's one-minute random walks and of
/// nearly every window of a series reporting every 10 s (6 values: at most 6 bins).
const INLINE_BINS: usize = 24;

/// Bin counts, one byte each until a bin needs more.
#[derive(Clone, PartialEq, Eq)]
enum Counts {
    U8(SmallVec<[u8; INLINE_BINS]>),
    U16(Vec<u16>),
    U64(Vec<u64>),
}

impl Counts {
    fn len(&self) -> usize {
        match self {
            Self::U8(c) => c.len(),
            Self::U16(c) => c.len(),
            Self::U64(c) => c.len(),
        }
    }

    fn get(&self, i: usize) -> u64 {
        match self {
            Self::U8(c) => u64::from(c[i]),
            Self::U16(c) => u64::from(c[i]),
            Self::U64(c) => c[i],
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::U8(c) if c.spilled() => c.capacity(),
            Self::U8(_) => 0,
            Self::U16(c) => c.capacity() * 2,
            Self::U64(c) => c.capacity() * 8,
        }
    }

    /// Adds `n` to bin `i`, widening every count if that bin would overflow.
    fn add(&mut self, i: usize, n: u64) {
        loop {
            match self {
                Self::U8(c) => match u8::try_from(u64::from(c[i]).saturating_add(n)) {
                    Ok(v) => return c[i] = v,
                    Err(_) => *self = Self::U16(c.iter().map(|&v| u16::from(v)).collect()),
                },
                Self::U16(c) => match u16::try_from(u64::from(c[i]).saturating_add(n)) {
                    Ok(v) => return c[i] = v,
                    Err(_) => *self = Self::U64(c.iter().map(|&v| u64::from(v)).collect()),
                },
                Self::U64(c) => return c[i] = c[i].saturating_add(n),
            }
        }
    }

    /// Inserts `n` empty bins before the first.
    fn grow_front(&mut self, n: usize) {
        match self {
            Self::U8(c) => c.insert_many(0, std::iter::repeat_n(0, n)),
            Self::U16(c) => drop(c.splice(0..0, std::iter::repeat_n(0, n))),
            Self::U64(c) => drop(c.splice(0..0, std::iter::repeat_n(0, n))),
        }
    }

    /// Appends `n` empty bins.
    fn grow_back(&mut self, n: usize) {
        match self {
            Self::U8(c) => c.resize(c.len() + n, 0),
            Self::U16(c) => c.resize(c.len() + n, 0),
            Self::U64(c) => c.resize(c.len() + n, 0),
        }
    }

    /// Merges the first `n + 1` bins into one (the new first bin).
    fn collapse_front(&mut self, n: usize) {
        let total = (0..=n).fold(0u64, |sum, i| sum.saturating_add(self.get(i)));
        match self {
            Self::U8(c) => drop(c.drain(..n)),
            Self::U16(c) => drop(c.drain(..n)),
            Self::U64(c) => drop(c.drain(..n)),
        }
        let first = self.get(0);
        self.add(0, total - first);
    }
}

/// Bins over a contiguous range of indices `offset..offset + counts.len()`.
#[derive(Clone, PartialEq, Eq)]
struct Store {
    offset: i32,
    counts: Counts,
}

impl Default for Store {
    fn default() -> Self {
        Self { offset: 0, counts: Counts::U8(SmallVec::new()) }
    }
}

impl Store {
    fn total(&self) -> u64 {
        // One match, then a plain sum the compiler vectorizes: a rollup row sums every bin of its
        // sketch, and bin by bin through `Counts::get` this was 8 % of the CPU while a minute's
        // windows closed. u8 and u16 bins cannot overflow a u64 sum of a Vec's length.
        match &self.counts {
            Counts::U8(c) => c.iter().map(|&v| u64::from(v)).sum(),
            Counts::U16(c) => c.iter().map(|&v| u64::from(v)).sum(),
            Counts::U64(c) => c.iter().fold(0u64, |sum, &v| sum.saturating_add(v)),
        }
    }

    fn add(&mut self, index: i32, n: u64) {
        // Distances in i64: indices of decoded sketches may lie far apart.
        let (len, offset, at) = (self.counts.len() as i64, i64::from(self.offset), i64::from(index));
        if len == 0 {
            self.offset = index;
            self.counts.grow_back(1);
        } else if at < offset {
            // Below the range: extend down, but never past MAX_BINS (then the lowest bin absorbs it).
            let grow = (offset - at).min(MAX_BINS as i64 - len);
            self.counts.grow_front(grow as usize);
            self.offset -= grow as i32;
        } else if at >= offset + len {
            // Above the range: keep the top MAX_BINS bins, folding the lowest ones together.
            let excess = (at - offset + 1 - MAX_BINS as i64).max(0);
            if excess >= len {
                // Nothing of the old range stays separate: it all folds into the new lowest bin.
                let total = self.total();
                self.counts = Counts::U8(SmallVec::new());
                self.offset = index - (MAX_BINS as i32 - 1);
                self.counts.grow_back(MAX_BINS);
                if total > 0 {
                    self.counts.add(0, total);
                }
            } else {
                if excess > 0 {
                    self.counts.collapse_front(excess as usize);
                    self.offset += excess as i32;
                }
                let grow = at - i64::from(self.offset) + 1 - self.counts.len() as i64;
                self.counts.grow_back(grow as usize);
            }
        }
        let i = (index.max(self.offset) - self.offset) as usize;
        self.counts.add(i, n);
    }

    fn bins(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        (0..self.counts.len()).map(|i| (self.offset + i as i32, self.counts.get(i))).filter(|&(_, n)| n > 0)
    }

    fn merge(&mut self, other: &Store) {
        for (index, n) in other.bins() {
            self.add(index, n);
        }
    }
}

/// A DDSketch with relative accuracy [`ALPHA`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DdSketch {
    positive: Store,
    /// Most telemetry is never negative: the store exists only once needed.
    negative: Option<Box<Store>>,
    zeros: u64,
}

impl fmt::Debug for DdSketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DdSketch")
            .field("count", &self.count())
            .field("zeros", &self.zeros)
            .field("positive_bins", &self.positive.counts.len())
            .field("negative_bins", &self.negative.as_ref().map_or(0, |s| s.counts.len()))
            .finish()
    }
}

/// Why bytes are not a sketch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first byte is not a known encoding version.
    #[error("unknown sketch encoding version {0}")]
    Version(u8),
    /// The bytes end early or hold an impossible value.
    #[error("corrupt sketch encoding at byte {0}")]
    Corrupt(usize),
}

impl DdSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of values added (summed from the bins: the count is not stored twice, since every
    /// window already keeps it).
    pub fn count(&self) -> u64 {
        self.zeros.saturating_add(self.positive.total()).saturating_add(self.negative.as_ref().map_or(0, |s| s.total()))
    }

    /// Adds a value. NaN is ignored (line protocol cannot carry it).
    pub fn add(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        let magnitude = value.abs();
        if magnitude < MIN_INDEXABLE {
            self.zeros += 1;
        } else {
            let index = index_of(magnitude);
            if value > 0.0 {
                self.positive.add(index, 1);
            } else {
                self.negative.get_or_insert_default().add(index, 1);
            }
        }
    }

    /// Asks the CPU for the positive bins' cache lines where they spilled to the heap (the
    /// inline ones lie beside the sketch); see [`crate::cache::prefetch`].
    pub fn prefetch(&self) {
        match &self.positive.counts {
            Counts::U8(c) if c.spilled() => prefetch(c.as_slice()),
            Counts::U8(_) => {}
            Counts::U16(c) => prefetch(c.as_slice()),
            Counts::U64(c) => prefetch(c.as_slice()),
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &DdSketch) {
        self.positive.merge(&other.positive);
        if let Some(negative) = &other.negative {
            self.negative.get_or_insert_default().merge(negative);
        }
        self.zeros = self.zeros.saturating_add(other.zeros);
    }

    /// The `q`-quantile (`0 ≤ q ≤ 1`) within relative error [`ALPHA`] of the value of rank
    /// `⌊q·(n−1)⌋` among the values added; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let [value] = self.quantiles([q]);
        value
    }

    /// Each of `qs` as [`Self::quantile`] would answer it, with one count and one walk of the
    /// bins for all of them: a rollup row takes four quantiles of every window's sketch, and a
    /// count and a walk per quantile was the largest single cost of closing windows in a profile
    /// (docs/performance.md).
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Option<f64>; N] {
        let mut answers = [None; N];
        let count = self.count();
        if count == 0 {
            return answers;
        }
        let last = count - 1;
        let mut wanted: [(u64, usize); N] =
            std::array::from_fn(|i| ((qs[i].clamp(0.0, 1.0) * last as f64).floor() as u64, i));
        wanted.sort_unstable();
        let mut wanted = wanted.into_iter().peekable();
        // Bins from the lowest value up: the most negative (highest magnitude) first, then zero.
        // A bin is (sign, index), its value computed only for the bins that answer (a power each).
        let negative = self.negative.iter().flat_map(|store| store.bins().rev().map(|(index, n)| ((-1.0, index), n)));
        let bins = negative
            .chain(std::iter::once(((0.0, 0), self.zeros)))
            .chain(self.positive.bins().map(|(index, n)| ((1.0, index), n)));
        let value = |(sign, index): (f64, i32)| if sign == 0.0 { 0.0 } else { sign * value_of(index) };
        let mut seen = 0u64;
        let mut highest = None;
        for (bin, n) in bins.filter(|&(_, n)| n > 0) {
            seen = seen.saturating_add(n);
            highest = Some(bin);
            while let Some((_, slot)) = wanted.next_if(|&(rank, _)| rank < seen) {
                answers[slot] = Some(value(bin));
            }
            if wanted.peek().is_none() {
                return answers;
            }
        }
        // Counts saturate only past 2^64 values; the last bin is the answer then.
        wanted.for_each(|(_, slot)| answers[slot] = highest.map(value));
        answers
    }

    /// Heap bytes held (the inline size is `size_of::<DdSketch>()`).
    pub fn heap_bytes(&self) -> usize {
        self.positive.counts.heap_bytes()
            + self.negative.as_ref().map_or(0, |s| size_of::<Store>() + s.counts.heap_bytes())
    }

    /// Encodes the sketch: version byte `1`, then LEB128 varints: zero count; then for the
    /// positive and the negative store: bin count `n`, and if `n > 0` the zigzag-encoded index of
    /// the first bin followed by `n` bin counts. α is fixed by the version (0.01).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put_varint(&mut out, self.zeros);
        for store in [Some(&self.positive), self.negative.as_deref()] {
            let len = store.map_or(0, |s| s.counts.len());
            put_varint(&mut out, len as u64);
            if let Some(store) = store.filter(|_| len > 0) {
                put_varint(&mut out, zigzag(store.offset));
                for i in 0..len {
                    put_varint(&mut out, store.counts.get(i));
                }
            }
        }
        out
    }

    /// Decodes [`DdSketch::to_bytes`] output.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown version or corrupt bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&version, mut rest) = bytes.split_first().ok_or(DecodeError::Corrupt(0))?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let mut next = || -> Result<(u64, usize), DecodeError> {
            let at = bytes.len() - rest.len();
            let (value, used) = get_varint(rest).ok_or(DecodeError::Corrupt(at))?;
            rest = &rest[used..];
            Ok((value, at))
        };
        let mut sketch = Self { zeros: next()?.0, ..Self::default() };
        // Only indices a finite value can map to: a forged index cannot make a store span more.
        let (lowest, highest) = (index_of(MIN_INDEXABLE) - 1, index_of(f64::MAX) + 1);
        for negative in [false, true] {
            let (len, at) = next()?;
            if len == 0 {
                continue;
            }
            if len > MAX_BINS as u64 {
                return Err(DecodeError::Corrupt(at));
            }
            let (offset, at) = next()?;
            let offset = unzigzag(offset).filter(|o| (lowest..=highest - len as i32 + 1).contains(o));
            let offset = offset.ok_or(DecodeError::Corrupt(at))?;
            let store = if negative { sketch.negative.get_or_insert_default() } else { &mut sketch.positive };
            for i in 0..len as i32 {
                let (n, _) = next()?;
                if n > 0 {
                    store.add(offset + i, n);
                }
            }
        }
        if !rest.is_empty() {
            return Err(DecodeError::Corrupt(bytes.len() - rest.len()));
        }
        Ok(sketch)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn zigzag(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

fn unzigzag(v: u64) -> Option<i32> {
    let v = u32::try_from(v).ok()?;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exact_quantile(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(f64::total_cmp);
        values[(q * (values.len() - 1) as f64).floor() as usize]
    }

    fn within_alpha(estimate: f64, exact: f64) -> bool {
        (estimate - exact).abs() <= ALPHA * exact.abs() + 1e-9
    }

    #[test]
    fn empty_and_single_values() {
        assert_eq!(DdSketch::new().quantile(0.5), None);
        let mut s = DdSketch::new();
        s.add(42.0);
        assert!(within_alpha(s.quantile(0.99).unwrap(), 42.0));
        let mut z = DdSketch::new();
        z.add(0.0);
        assert_eq!(z.quantile(0.5), Some(0.0));
    }

    #[test]
    fn counts_widen_past_a_byte_and_two() {
        let mut s = DdSketch::new();
        for _ in 0..70_000 {
            s.add(5.0);
        }
        s.add(500.0);
        assert_eq!(s.count(), 70_001);
        assert!(within_alpha(s.quantile(0.5).unwrap(), 5.0));
        assert!(within_alpha(s.quantile(1.0).unwrap(), 500.0));
        assert_eq!(DdSketch::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn memory_stays_small_for_telemetry() {
        let mut s = DdSketch::new();
        for i in 0..3600 {
            s.add(f64::from(i % 100) + 0.5);
        }
        assert!(s.heap_bytes() <= 512, "{} bytes", s.heap_bytes());
    }

    #[test]
    fn far_apart_bins_and_forged_bytes_stay_bounded() {
        let mut s = DdSketch::new();
        s.add(1e-8);
        s.add(1e300);
        assert!(s.heap_bytes() <= MAX_BINS, "{} bytes", s.heap_bytes());
        assert!(within_alpha(s.quantile(1.0).unwrap(), 1e300));
        // A forged offset far outside what a finite value maps to is refused, not allocated.
        let mut forged = vec![VERSION, 0, 1];
        put_varint(&mut forged, zigzag(1_000_000_000));
        forged.extend([1, 0]);
        assert!(DdSketch::from_bytes(&forged).is_err());
        // Counts near u64::MAX saturate instead of overflowing.
        let mut huge = vec![VERSION, 0, 2, 0];
        put_varint(&mut huge, u64::MAX);
        put_varint(&mut huge, u64::MAX);
        huge.push(0);
        let decoded = DdSketch::from_bytes(&huge).unwrap();
        assert_eq!(decoded.count(), u64::MAX);
        assert!(DdSketch::from_bytes(&[VERSION, 0, 0, 0, 7]).is_err(), "trailing bytes");
    }

    #[test]
    fn decoding_rejects_garbage() {
        assert_eq!(DdSketch::from_bytes(&[]), Err(DecodeError::Corrupt(0)));
        assert_eq!(DdSketch::from_bytes(&[9]), Err(DecodeError::Version(9)));
        assert!(DdSketch::from_bytes(&[1, 0, 5, 0]).is_err());
    }

    fn values() -> impl Strategy<Value = Vec<f64>> {
        proptest::collection::vec(
            prop_oneof![-1e6..1e6f64, 0.0..100.0f64, Just(0.0), (1e-12..1e12f64).prop_map(|v| v.sqrt()),],
            1..300,
        )
    }

    proptest! {
        #[test]
        fn quantiles_are_within_alpha(mut values in values(), q in 0.0..=1.0f64) {
            let mut sketch = DdSketch::new();
            values.iter().for_each(|&v| sketch.add(v));
            let exact = exact_quantile(&mut values, q);
            let estimate = sketch.quantile(q).unwrap();
            prop_assert!(within_alpha(estimate, exact), "q={} exact={} estimate={}", q, exact, estimate);
        }

        #[test]
        fn quantiles_in_one_pass_are_each_within_alpha(mut values in values(), qs in proptest::array::uniform4(0.0..=1.0f64)) {
            let mut sketch = DdSketch::new();
            values.iter().for_each(|&v| sketch.add(v));
            for (q, estimate) in qs.into_iter().zip(sketch.quantiles(qs)) {
                let exact = exact_quantile(&mut values, q);
                prop_assert!(within_alpha(estimate.unwrap(), exact), "q={} exact={} estimate={:?}", q, exact, estimate);
            }
        }

        #[test]
        fn merge_equals_the_sketch_of_the_union(a in values(), b in values()) {
            let (mut sa, mut sb, mut union) = (DdSketch::new(), DdSketch::new(), DdSketch::new());
            a.iter().for_each(|&v| { sa.add(v); union.add(v); });
            b.iter().for_each(|&v| { sb.add(v); union.add(v); });
            sa.merge(&sb);
            for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(sa.quantile(q), union.quantile(q));
            }
            prop_assert_eq!(sa.count(), union.count());
        }

        #[test]
        fn encoding_round_trips(values in values()) {
            let mut sketch = DdSketch::new();
            values.iter().for_each(|&v| sketch.add(v));
            let decoded = DdSketch::from_bytes(&sketch.to_bytes()).unwrap();
            for q in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(decoded.quantile(q), sketch.quantile(q));
            }
        }
    }
}
