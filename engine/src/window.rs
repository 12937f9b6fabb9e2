//! Tumbling event-time windows of one partition, at every configured resolution.
//!
//! The finest resolution is fed by points; each coarser one only by merging the finer windows it
//! contains as they close, so a coarse rollup is exactly the merge of its fine rollups. Open
//! windows are kept in buckets by window start (all series' windows with one start close
//! together, at one watermark), and within a bucket by series, with that series' fields in a short
//! list: one hash lookup per point, not per field value.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use augur_ingest::series::canonical_key_into;
use augur_ingest::{PointView, SeriesId};
use augur_storage::cache::prefetch;

use crate::aggregate::{Aggregate, Kind};
use crate::rollup::RollupBuilder;
use crate::snapshot::{Reader, SnapshotError, Writer};

/// A window length, e.g. 10 s, with its name in output (`10s`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Length in ns.
    pub nanos: i64,
    /// Name in output and paths.
    pub name: String,
}

impl Resolution {
    /// A resolution of `length`; its name is the shortest `<n><unit>` spelling (`10s`, `1m`, `1h`).
    pub fn new(length: Duration) -> Self {
        let nanos = i64::try_from(length.as_nanos()).unwrap_or(i64::MAX);
        let units = [(3_600_000_000_000, "h"), (60_000_000_000, "m"), (1_000_000_000, "s"), (1_000_000, "ms")];
        let name = units
            .iter()
            .find(|(unit, _)| nanos % unit == 0)
            .map_or_else(|| format!("{nanos}ns"), |(unit, suffix)| format!("{}{suffix}", nanos / unit));
        Self { nanos, name }
    }

    /// Start of the window containing `time` (windows are aligned to the Unix epoch). Saturates at
    /// `i64::MIN` for times in the first window before year 1678, whose start is not representable.
    pub fn window_start(&self, time: i64) -> i64 {
        time.div_euclid(self.nanos).saturating_mul(self.nanos)
    }
}

/// Identity of a series as output needs it; one per series per partition, shared by its windows.
#[derive(Debug, Clone)]
pub struct SeriesInfo {
    /// Canonical series key.
    pub key: Arc<str>,
    /// Measurement.
    pub measurement: Arc<str>,
    /// Region.
    pub region: Arc<str>,
    /// Open windows (over all buckets and levels) that hold this series: at 0 it is forgotten.
    open: u32,
}

/// One field's aggregate in a window.
#[derive(Debug, Clone)]
pub struct FieldAggregate {
    /// Field name.
    pub field: Arc<str>,
    /// Value kind (a field that changes type has one aggregate per kind).
    pub kind: Kind,
    /// The state.
    pub aggregate: Aggregate,
}

/// Series ids are already uniform hashes: use them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesIdHasher(u64);

impl Hasher for SeriesIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map by series id, hashed by [`SeriesIdHasher`].
pub type SeriesMap<V> = HashMap<SeriesId, V, BuildHasherDefault<SeriesIdHasher>>;
/// A series' fields in one window, behind an `Arc` so that a checkpoint's copy of the windows
/// shares them: the partition copies a series' fields only when it changes them while the
/// checkpointer still holds the old ones (copy on write), so taking the copy costs its thread
/// almost nothing.
type Bucket = SeriesMap<Arc<Vec<FieldAggregate>>>;

/// All open windows of one partition. A checkpoint takes a clone, which shares every series'
/// fields with the original until either changes them, and encodes it elsewhere.
#[derive(Debug, Clone)]
pub struct Windows {
    resolutions: Vec<Resolution>,
    /// Per resolution (finest first): window start → open windows of every series.
    levels: Vec<BTreeMap<i64, Bucket>>,
    series: SeriesMap<SeriesInfo>,
    /// Field names, measurements and regions, stored once per partition.
    names: HashSet<Arc<str>>,
    key_buffer: Vec<u8>,
}

/// What [`Windows::close`] emitted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Rollup rows emitted.
    pub rows: usize,
    /// Series whose windows of some resolution closed.
    pub series: usize,
}

impl Windows {
    /// Windows at `resolutions` (finest first; each a multiple of the one before).
    pub fn new(resolutions: Vec<Resolution>) -> Self {
        let levels = resolutions.iter().map(|_| BTreeMap::new()).collect();
        Self { resolutions, levels, series: SeriesMap::default(), names: HashSet::new(), key_buffer: Vec::new() }
    }

    /// Number of series with open windows.
    pub fn active_series(&self) -> usize {
        self.series.len()
    }

    /// Adds an on-time point's fields to the finest window containing it.
    pub fn add(&mut self, point: &PointView<'_>) {
        let Self { resolutions, levels, series, names, key_buffer } = self;
        let start = resolutions[0].window_start(point.time());
        let bucket = levels[0].entry(start).or_default();
        let fields = match bucket.entry(point.series_id()) {
            Entry::Occupied(entry) => Arc::make_mut(entry.into_mut()),
            Entry::Vacant(entry) => {
                let info = series.entry(point.series_id()).or_insert_with(|| {
                    key_buffer.clear();
                    canonical_key_into(point.measurement(), point.tags(), key_buffer);
                    SeriesInfo {
                        key: String::from_utf8_lossy(key_buffer).into(),
                        measurement: intern(names, point.measurement()),
                        region: intern(names, point.region()),
                        open: 0,
                    }
                });
                info.open += 1;
                Arc::make_mut(entry.insert(Arc::new(Vec::with_capacity(point.fields().len()))))
            }
        };
        prefetch(fields);
        // Then the sketches' bins where they spilled to the heap: waiting for them field by field
        // was a tenth of the CPU under load (docs/performance.md).
        fields.iter().for_each(|f| f.aggregate.prefetch());
        let time = point.time();
        for (i, (name, value)) in point.fields().enumerate() {
            let kind = Kind::of(&value);
            // Points of a series usually list their fields in the same order: try that slot first.
            let slot = match fields.get(i) {
                Some(f) if f.kind == kind && *f.field == *name => Some(i),
                _ => fields.iter().position(|f| f.kind == kind && *f.field == *name),
            };
            match slot {
                Some(slot) => fields[slot].aggregate.add(&value, time),
                None => fields.push(FieldAggregate {
                    field: intern(names, name),
                    kind,
                    aggregate: Aggregate::new(&value, time),
                }),
            }
        }
    }

    /// Closes every window ending at or before `watermark` (all windows when `flush`, those still
    /// open marked partial), finest first, appending a row per (series, field, window) to `out`.
    pub fn close(&mut self, watermark: i64, flush: bool, out: &mut RollupBuilder) -> Closed {
        self.close_at_most(watermark, flush, out, usize::MAX)
    }

    /// As [`Windows::close`], but closes at most `limit` series' windows; the rest close at the
    /// next call (a coarser window only once every finer one inside it has closed). So a
    /// partition closes a minute's windows of a million series over many rounds, taking points in
    /// between, instead of stopping for the whole of it. A point for a window being closed is
    /// late already (the watermark passed the window's end), so slicing changes no row.
    pub fn close_at_most(&mut self, watermark: i64, flush: bool, out: &mut RollupBuilder, mut limit: usize) -> Closed {
        let mut closed = Closed::default();
        for level in 0..self.levels.len() {
            let resolution = self.resolutions[level].clone();
            while let Some(mut entry) = self.levels[level].first_entry() {
                let start = *entry.key();
                let end = start.saturating_add(resolution.nanos);
                if end > watermark && !flush {
                    break;
                }
                if limit == 0 {
                    return closed; // finer windows are still open: the coarser ones wait
                }
                let partial = end > watermark;
                let taken: Bucket = if entry.get().len() <= limit {
                    entry.remove()
                } else {
                    let bucket = entry.get_mut();
                    let ids: Vec<SeriesId> = bucket.keys().take(limit).copied().collect();
                    ids.into_iter().filter_map(|id| Some((id, bucket.remove(&id)?))).collect()
                };
                limit -= taken.len();
                closed.series += taken.len();
                for (series_id, fields) in taken {
                    let Some(info) = self.series.get_mut(&series_id) else { continue };
                    for f in fields.iter() {
                        out.append(series_id, info, f, &resolution, start, partial);
                        closed.rows += 1;
                    }
                    info.open -= 1;
                    if let Some(coarser) = self.resolutions.get(level + 1) {
                        let coarse_start = coarser.window_start(start);
                        let bucket = self.levels[level + 1].entry(coarse_start).or_default();
                        match bucket.entry(series_id) {
                            Entry::Vacant(slot) => {
                                info.open += 1;
                                slot.insert(fields);
                            }
                            Entry::Occupied(slot) => merge_fields(Arc::make_mut(slot.into_mut()), &fields),
                        }
                    }
                    if info.open == 0 {
                        self.series.remove(&series_id);
                    }
                }
            }
        }
        closed
    }
}

impl Windows {
    /// The resolutions, finest first.
    pub fn resolutions(&self) -> &[Resolution] {
        &self.resolutions
    }

    /// Writes the open windows into a snapshot (see [`crate::snapshot`]), letting go of each
    /// series' fields once written: a checkpoint's copy shares them with the live windows until
    /// the partition changes them, so a copy released as it is written holds fewer twice.
    pub fn encode(self, w: &mut Writer) {
        w.varint(self.series.len() as u64);
        for (&id, info) in &self.series {
            w.i64(id as i64);
            w.str(&info.key);
            w.str(&info.measurement);
            w.str(&info.region);
            w.varint(u64::from(info.open));
            w.boundary();
        }
        for level in self.levels {
            w.varint(level.len() as u64);
            for (start, bucket) in level {
                w.i64(start);
                w.varint(bucket.len() as u64);
                for (id, fields) in bucket {
                    w.i64(id as i64);
                    w.varint(fields.len() as u64);
                    for f in fields.iter() {
                        w.str(&f.field);
                        w.u8(f.kind.code());
                        f.aggregate.encode(w);
                    }
                    w.boundary();
                }
            }
        }
    }

    /// Moves every series' open windows into `targets[place(series)]`: how a checkpoint taken
    /// with one partition count is restored under another. Each series lives in exactly one
    /// partition, so the targets never hold one already.
    pub fn move_into(self, targets: &mut [Windows], place: impl Fn(SeriesId) -> usize) {
        for (id, mut info) in self.series {
            let target = &mut targets[place(id)];
            info.measurement = intern(&mut target.names, &info.measurement);
            info.region = intern(&mut target.names, &info.region);
            target.series.insert(id, info);
        }
        for (level, windows) in self.levels.into_iter().enumerate() {
            for (start, bucket) in windows {
                for (id, mut fields) in bucket {
                    let target = &mut targets[place(id)];
                    for f in Arc::make_mut(&mut fields) {
                        f.field = intern(&mut target.names, &f.field);
                    }
                    target.levels[level].entry(start).or_default().insert(id, fields);
                }
            }
        }
    }

    /// Reads what [`Windows::encode`] wrote.
    ///
    /// # Errors
    /// When the bytes are damaged.
    pub fn decode(r: &mut Reader<'_>, resolutions: Vec<Resolution>) -> Result<Self, SnapshotError> {
        let mut windows = Self::new(resolutions);
        let Self { levels, series, names, .. } = &mut windows;
        for _ in 0..r.count()? {
            let id = r.i64()? as u64;
            let key = r.str()?.into();
            let measurement = intern(names, r.str()?);
            let region = intern(names, r.str()?);
            let open = u32::try_from(r.varint()?).map_err(|_| r.corrupt())?;
            series.insert(id, SeriesInfo { key, measurement, region, open });
        }
        for level in levels.iter_mut() {
            for _ in 0..r.count()? {
                let start = r.i64()?;
                let mut bucket = Bucket::default();
                for _ in 0..r.count()? {
                    let id = r.i64()? as u64;
                    if !series.contains_key(&id) {
                        return Err(r.corrupt());
                    }
                    let mut fields = Vec::new();
                    for _ in 0..r.count()? {
                        let field = intern(names, r.str()?);
                        let kind = Kind::from_code(r.u8()?).ok_or_else(|| r.corrupt())?;
                        fields.push(FieldAggregate { field, kind, aggregate: Aggregate::decode(r)? });
                    }
                    bucket.insert(id, Arc::new(fields));
                }
                level.insert(start, bucket);
            }
        }
        Ok(windows)
    }
}

/// The shared copy of `name` in `names` (field names, measurements and regions are stored once
/// per partition).
pub(crate) fn intern(names: &mut HashSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(existing) = names.get(name) {
        return existing.clone();
    }
    let name: Arc<str> = Arc::from(name);
    names.insert(name.clone());
    name
}

fn merge_fields(into: &mut Vec<FieldAggregate>, from: &[FieldAggregate]) {
    for f in from {
        match into.iter_mut().find(|g| g.kind == f.kind && g.field == f.field) {
            Some(g) => g.aggregate.merge(&f.aggregate),
            None => into.push(f.clone()),
        }
    }
}
