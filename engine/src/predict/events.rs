//! One partition's predictions: a detector per scored (series, field), and the events they raise.
//!
//! A series becomes anomalous when a score reaches `threshold`; the event stays open, tracking its
//! peak, until the scores have stayed under `clear` (hysteresis) for `cool-down` of event time.
//! So one incident is one event, with a start, a peak and an end. Each event leaves as two rows,
//! one when it opens and one when it closes (see `augur_storage::schema::prediction_schema`).
//!
//! Capacity fields (`[[predict.capacity]]`: a field name and the limit it must not reach) also get
//! an exhaustion forecast ([`super::forecast`]). When the time left falls under `horizon` with
//! enough confidence, an `exhaustion` event opens; each new forecast while it is open leaves an
//! `open` row with the updated `forecast`; it closes when the time left exceeds 1.5 × `horizon`
//! or the trend no longer heads for the limit.

use std::collections::hash_map::Entry;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, TimestampNanosecondArray, UInt64Array};
use arrow_schema::ArrowError;
use augur_ingest::series::canonical_key_into;
use augur_ingest::{FieldValue, PointView, SeriesId};
use augur_storage::cache::prefetch;
use augur_storage::postgres::series::tags;
use augur_storage::schema::{prediction_schema, Text};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::detector::Detector;
use super::forecast::Trend;
use super::risk::{Contribution, MIN_ANOMALY_SCORE};
use crate::snapshot::{Reader, SnapshotError, Writer};
use crate::window::{intern, SeriesMap};

/// `[predict]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PredictConfig {
    /// Score series at all.
    pub enabled: bool,
    /// The fields scored, by name; empty: every numeric field.
    pub fields: Vec<String>,
    /// A score from here opens an event.
    pub threshold: f64,
    /// An open event closes once scores stayed under this for `cool-down`.
    pub clear: f64,
    /// How long (event time) scores must stay under `clear` to close an event.
    #[serde(with = "humantime_serde")]
    pub cool_down: Duration,
    /// The tag naming the entity an event is about (its value is the event's `entity`).
    pub entity_tag: String,
    /// Fields forecast to exhaustion, each with its limit.
    pub capacity: Vec<CapacityRule>,
    /// An exhaustion forecast under this opens an event.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// The span the trend is fitted over.
    #[serde(with = "humantime_serde")]
    pub trend_window: Duration,
    /// Forecasts less sure than this open no event.
    pub min_confidence: f64,
    /// A host's risk halves every this long (event time) without a new signal.
    #[serde(with = "humantime_serde")]
    pub risk_half_life: Duration,
    /// POST every event that opens or closes here (`http://host:port/path`); none: no alerts.
    pub webhook: Option<String>,
    /// Score the mean of each closed window of this resolution (one of `engine.resolutions`)
    /// instead of every raw point: for noisy or high-rate series. None: raw points.
    pub resolution: Option<String>,
    /// How long one webhook POST may take.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
}

/// `[[predict.capacity]]`: a field that runs out when it reaches `limit`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CapacityRule {
    /// The field name (any measurement).
    pub field: String,
    /// The value it must not reach: 100 for a used percent, 0 for free bytes.
    pub limit: f64,
}

impl Default for PredictConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            fields: Vec::new(),
            threshold: 0.5,
            clear: 0.25,
            cool_down: Duration::from_secs(300),
            entity_tag: "host".into(),
            capacity: vec![
                CapacityRule { field: "used_percent".into(), limit: 100.0 },
                CapacityRule { field: "free".into(), limit: 0.0 },
            ],
            horizon: Duration::from_secs(24 * 3600),
            trend_window: Duration::from_secs(12 * 3600),
            min_confidence: 0.5,
            risk_half_life: Duration::from_secs(3600),
            webhook: None,
            resolution: None,
            webhook_timeout: Duration::from_secs(5),
        }
    }
}

impl PredictConfig {
    /// Every problem of this section.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.threshold) || !(0.0..=1.0).contains(&self.clear) {
            problems.push("predict.threshold and predict.clear must lie in [0, 1]".into());
        }
        if self.clear > self.threshold {
            problems.push(format!(
                "predict.clear = {} must not be above predict.threshold = {}",
                self.clear, self.threshold
            ));
        }
        if self.entity_tag.is_empty() {
            problems.push("predict.entity-tag must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            problems.push("predict.min-confidence must lie in [0, 1]".into());
        }
        if self.webhook.as_deref().is_some_and(|url| !url.starts_with("http://")) {
            problems.push("predict.webhook must be an http:// URL".into());
        }
        if self.horizon.is_zero() {
            problems.push("predict.horizon must be above 0".into());
        }
        if self.trend_window < Duration::from_secs(64) {
            problems.push("predict.trend-window must be at least 64s (64 buckets)".into());
        }
        problems
    }

    fn cool_down_nanos(&self) -> i64 {
        nanos(self.cool_down)
    }

    /// Whether field `name` is scored: the configured fields (every one when none is), numeric
    /// values only.
    fn scores(&self, name: &str, value: &FieldValue<&str>) -> bool {
        !matches!(value, FieldValue::Boolean(_) | FieldValue::String(_)) && self.scores_name(name)
    }

    fn scores_name(&self, name: &str) -> bool {
        self.fields.is_empty() || self.fields.iter().any(|f| f == name)
    }

    /// The limit of field `name`, if it is a capacity field.
    fn limit_of(&self, name: &str) -> Option<f64> {
        self.capacity.iter().find(|c| c.field == name).map(|c| c.limit)
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// An open event.
#[derive(Debug, Clone, PartialEq)]
struct OpenEvent {
    id: u64,
    start: i64,
    peak_time: i64,
    peak_score: f64,
    peak_value: f64,
    /// Since when scores are under `clear`.
    quiet_since: Option<i64>,
    /// When the field is forecast to reach its limit (exhaustion events).
    forecast: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
struct FieldState {
    name: Arc<str>,
    detector: Detector,
    /// Event time of the last value scored: values are scored in event-time order only.
    last_time: i64,
    /// Boxed, as `capacity`: few fields have one, and every field's state is kept (and copied at
    /// checkpoints), so inline they would cost 200 bytes per field.
    event: Option<Box<OpenEvent>>,
    /// For a capacity field: its limit, trend and exhaustion event.
    capacity: Option<Box<Capacity>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Capacity {
    limit: f64,
    trend: Trend,
    event: Option<OpenEvent>,
}

#[derive(Debug, Clone, PartialEq)]
struct SeriesState {
    key: Arc<str>,
    measurement: Arc<str>,
    region: Arc<str>,
    entity: Option<Arc<str>>,
    fields: Vec<FieldState>,
}

/// Counters of one partition's predictions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PredictTotals {
    /// Values scored.
    pub scored: u64,
    /// Events opened.
    pub opened: u64,
    /// Events closed.
    pub closed: u64,
    /// Events open now.
    pub open: u64,
}

/// One partition's detectors and events.
#[derive(Debug)]
pub struct Predictor {
    config: Arc<PredictConfig>,
    /// Each series' state behind an `Arc`, so a checkpoint's copy shares it: the partition copies
    /// a series only when it changes it while the checkpointer still holds the old state.
    series: SeriesMap<Arc<SeriesState>>,
    rows: EventRows,
    totals: PredictTotals,
    key_buffer: Vec<u8>,
    /// Signals about entities since the last [`Predictor::take_contributions`].
    contributions: Vec<Contribution>,
    /// Series with an open anomaly event, which [`Predictor::close_quiet`] looks at.
    open_anomalies: HashSet<SeriesId>,
    /// No open anomaly event can close before this (event time): the earliest last value plus
    /// the cool-down, as of the last look. Values only move it later, so `close_quiet` skips the
    /// open events until then (looking at every one on every round was a sixth of the CPU).
    next_quiet_close: i64,
    /// Field names, stored once per partition and shared by every series' field states.
    names: HashSet<Arc<str>>,
}

impl Predictor {
    /// A predictor with no state yet.
    pub fn new(config: Arc<PredictConfig>) -> Self {
        Self {
            config,
            series: SeriesMap::default(),
            rows: EventRows::default(),
            totals: PredictTotals::default(),
            key_buffer: Vec::new(),
            contributions: Vec::new(),
            open_anomalies: HashSet::new(),
            next_quiet_close: i64::MAX,
            names: HashSet::new(),
        }
    }

    /// Records risk changes of hosts as `risk` rows: one event per host (its id from region and
    /// host), updated with each change, `peak_score` the risk, `series`/`field` the signal.
    pub fn record_risk(&mut self, changes: &[Contribution]) {
        for c in changes {
            let mut id = Vec::with_capacity(c.region.len() + c.entity.len() + 1);
            id.extend_from_slice(c.region.as_bytes());
            id.push(0);
            id.extend_from_slice(c.entity.as_bytes());
            let id = xxh3_64(&id);
            let event = OpenEvent {
                id,
                start: c.time,
                peak_time: c.time,
                peak_score: c.risk,
                peak_value: c.risk,
                quiet_since: None,
                forecast: None,
            };
            let info = (&*c.series, &*c.measurement, &*c.region, Some(&*c.entity));
            self.rows.append(id, info, &c.field, &Change { kind: "risk", event, what: What::Updated(c.time) });
        }
    }

    /// Closes the anomaly events of fields that sent nothing for `cool-down` before `now` (event
    /// time, the partition's watermark): a host that crashed or went silent ends its events
    /// too, at its last value plus the cool-down.
    pub fn close_quiet(&mut self, now: i64) {
        if now < self.next_quiet_close {
            return;
        }
        let cool_down = self.config.cool_down_nanos();
        let mut next = i64::MAX;
        let quiet: Vec<SeriesId> = self.open_anomalies.iter().copied().collect();
        for id in quiet {
            let Some(state) = self.series.get_mut(&id).map(Arc::make_mut) else { continue };
            let mut still_open = false;
            for slot in 0..state.fields.len() {
                let field = &mut state.fields[slot];
                if field.event.is_none() {
                    continue;
                }
                if now.saturating_sub(field.last_time) < cool_down {
                    still_open = true;
                    next = next.min(field.last_time.saturating_add(cool_down));
                    continue;
                }
                let end = field.last_time.saturating_add(cool_down);
                let Some(event) = field.event.take().map(|e| *e) else { continue };
                let change = Change { kind: "anomaly", event, what: What::Closed(end) };
                self.totals.closed += 1;
                self.totals.open -= 1;
                self.rows.append(id, state_info(state), &state.fields[slot].name, &change);
            }
            if !still_open {
                self.open_anomalies.remove(&id);
            }
        }
        self.next_quiet_close = next;
    }

    /// The signals about entities since the last call, for the risk board.
    pub fn take_contributions(&mut self) -> Vec<Contribution> {
        std::mem::take(&mut self.contributions)
    }

    /// The counters.
    pub fn totals(&self) -> PredictTotals {
        self.totals
    }

    /// Scores the numeric fields of an on-time point (those configured), in event-time order per
    /// field: a value older than the last one scored for its field is not scored.
    pub fn observe(&mut self, point: &PointView<'_>) {
        if !self.config.enabled {
            return;
        }
        if self.config.resolution.is_some() {
            return; // scored from rollups instead
        }
        let numeric = point.fields().filter_map(|(name, value)| match value {
            FieldValue::Float(v) => Some((name, v)),
            FieldValue::Integer(v) => Some((name, v as f64)),
            FieldValue::Unsigned(v) => Some((name, v as f64)),
            FieldValue::Boolean(_) | FieldValue::String(_) => None,
        });
        self.score(point.series_id(), point.time(), numeric, |config, key_buffer| {
            // No state for a series with nothing to score; room for exactly what its first point
            // scores (doubling would leave up to half a series' field states unused).
            let fields = point.fields().filter(|(name, value)| config.scores(name, value)).count();
            if fields == 0 {
                return None;
            }
            key_buffer.clear();
            canonical_key_into(point.measurement(), point.tags(), key_buffer);
            Some(SeriesState {
                key: String::from_utf8_lossy(key_buffer).into(),
                measurement: point.measurement().into(),
                region: point.region().into(),
                entity: point.tags().find(|(k, _)| *k == config.entity_tag).map(|(_, v)| v.into()),
                fields: Vec::with_capacity(fields),
            })
        });
    }

    /// With `[predict] resolution`, scores the mean of every closed window of that resolution in
    /// `rollups` (a batch in the rollup schema) instead of raw points, at the window's start.
    pub fn observe_rollups(&mut self, rollups: &RecordBatch) {
        let Some(resolution) = self.config.resolution.clone() else { return };
        if !self.config.enabled {
            return;
        }
        let text = |name: &str| rollups.column_by_name(name).and_then(Text::of);
        let (Some(key), Some(measurement), Some(region), Some(field), Some(res), Some(kind)) =
            (text("series_key"), text("measurement"), text("region"), text("field"), text("resolution"), text("kind"))
        else {
            return;
        };
        let ids = rollups.column_by_name("series_id").and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        let starts =
            rollups.column_by_name("window_start").and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
        let means = rollups.column_by_name("mean").and_then(|c| c.as_any().downcast_ref::<Float64Array>());
        let partial = rollups.column_by_name("partial").and_then(|c| c.as_any().downcast_ref::<BooleanArray>());
        let (Some(ids), Some(starts), Some(means), Some(partial)) = (ids, starts, means, partial) else { return };
        for row in 0..rollups.num_rows() {
            let numeric = matches!(kind.value(row), "float" | "integer" | "unsigned");
            if res.value(row) != resolution || partial.value(row) || !numeric || means.is_null(row) {
                continue;
            }
            let name = field.value(row);
            if !self.config.scores_name(name) {
                continue;
            }
            self.score(ids.value(row), starts.value(row), [(name, means.value(row))], |config, _| {
                Some(SeriesState {
                    key: key.value(row).into(),
                    measurement: measurement.value(row).into(),
                    region: region.value(row).into(),
                    entity: tags(key.value(row))
                        .into_iter()
                        .find(|(k, _)| *k == config.entity_tag)
                        .map(|(_, v)| v.into()),
                    fields: Vec::new(),
                })
            });
        }
    }

    /// Scores the `values` (field name, value) of series `id` at `time`: each configured field
    /// newer than its last value; events and risk signals follow. The series is looked up once
    /// for all of them; a series without state yet gets what `new` makes of it (with a buffer for
    /// its key), or is not scored when `new` gives nothing.
    fn score<'a>(
        &mut self,
        id: SeriesId,
        time: i64,
        values: impl IntoIterator<Item = (&'a str, f64)>,
        new: impl FnOnce(&PredictConfig, &mut Vec<u8>) -> Option<SeriesState>,
    ) {
        let Self { config, series, rows, totals, contributions, open_anomalies, next_quiet_close, names, key_buffer } =
            self;
        let state = match series.entry(id) {
            Entry::Occupied(state) => Arc::make_mut(state.into_mut()),
            Entry::Vacant(slot) => match new(config, key_buffer) {
                Some(state) => Arc::make_mut(slot.insert(Arc::new(state))),
                None => return,
            },
        };
        prefetch(&state.fields);
        for (i, (name, value)) in values.into_iter().enumerate() {
            if !config.scores_name(name) {
                continue;
            }
            // Points of a series usually list their fields in the same order: try that slot first.
            let slot = match state.fields.get(i) {
                Some(f) if *f.name == *name => Some(i),
                _ => state.fields.iter().position(|f| *f.name == *name),
            };
            let slot = match slot {
                Some(slot) => slot,
                None => {
                    let capacity = config
                        .limit_of(name)
                        .map(|limit| Box::new(Capacity { limit, trend: Trend::default(), event: None }));
                    state.fields.push(FieldState {
                        name: intern(names, name),
                        detector: Detector::default(),
                        last_time: i64::MIN,
                        event: None,
                        capacity,
                    });
                    state.fields.len() - 1
                }
            };
            let field = &mut state.fields[slot];
            if time <= field.last_time {
                continue;
            }
            field.last_time = time;
            let score = field.detector.score(time, value);
            totals.scored += 1;
            let anomaly = field.step(config, id, time, score, value);
            let (exhaustion, running_out) = field.forecast(config, id, time, value);
            if let Some(entity) = &state.entity {
                let anomalous = (score >= MIN_ANOMALY_SCORE).then_some((score, "anomaly"));
                let running_out = running_out.map(|risk| (risk, "exhaustion"));
                for (risk, kind) in anomalous.into_iter().chain(running_out) {
                    contributions.push(Contribution {
                        region: state.region.clone(),
                        entity: entity.clone(),
                        time,
                        risk,
                        series: state.key.clone(),
                        measurement: state.measurement.clone(),
                        field: state.fields[slot].name.clone(),
                        kind,
                    });
                }
            }
            for change in anomaly.iter().chain(&exhaustion) {
                match change.what {
                    What::Opened => {
                        totals.opened += 1;
                        totals.open += 1;
                    }
                    What::Closed(_) => {
                        totals.closed += 1;
                        totals.open -= 1;
                    }
                    What::Updated(_) => {}
                }
                if change.kind == "anomaly" {
                    match change.what {
                        What::Opened => {
                            *next_quiet_close = (*next_quiet_close).min(time.saturating_add(config.cool_down_nanos()));
                            open_anomalies.insert(id)
                        }
                        // Closed: the series stays looked at while another field's event is open.
                        _ => state.fields.iter().any(|f| f.event.is_some()) || open_anomalies.remove(&id),
                    };
                }
                rows.append(id, state_info(state), &state.fields[slot].name, change);
            }
        }
    }

    /// The rows of the events opened and closed since the last call, if any.
    ///
    /// # Errors
    /// Only if the columns disagree with the schema (a bug).
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        if self.rows.len == 0 {
            return Ok(None);
        }
        self.rows.finish().map(Some)
    }
}

/// The columns of a series that every row of its events repeats.
type SeriesInfo<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

fn state_info(state: &SeriesState) -> SeriesInfo<'_> {
    (&state.key, &state.measurement, &state.region, state.entity.as_deref())
}

/// A row to emit: an event opened, updated or closed.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    kind: &'static str,
    event: OpenEvent,
    what: What,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum What {
    Opened,
    /// A new forecast, at this event time.
    Updated(i64),
    /// At this event time.
    Closed(i64),
}

fn event_id(series: SeriesId, kind: &str, field: &str, start: i64) -> u64 {
    let mut id = Vec::with_capacity(24 + field.len());
    id.extend_from_slice(&series.to_le_bytes());
    id.extend_from_slice(&start.to_le_bytes());
    id.extend_from_slice(kind.as_bytes());
    id.extend_from_slice(field.as_bytes());
    xxh3_64(&id)
}

impl FieldState {
    /// Applies `score` (of `value` at `time`) to this field's event.
    fn step(&mut self, config: &PredictConfig, series: SeriesId, time: i64, score: f64, value: f64) -> Option<Change> {
        let Some(event) = &mut self.event else {
            if score < config.threshold {
                return None;
            }
            let event = OpenEvent {
                id: event_id(series, "anomaly", &self.name, time),
                start: time,
                peak_time: time,
                peak_score: score,
                peak_value: value,
                quiet_since: None,
                forecast: None,
            };
            self.event = Some(Box::new(event.clone()));
            return Some(Change { kind: "anomaly", event, what: What::Opened });
        };
        if score > event.peak_score {
            (event.peak_time, event.peak_score, event.peak_value) = (time, score, value);
        }
        if score >= config.clear {
            event.quiet_since = None;
            return None;
        }
        let since = *event.quiet_since.get_or_insert(time);
        if time.saturating_sub(since) < config.cool_down_nanos() {
            return None;
        }
        self.event.take().map(|event| Change { kind: "anomaly", event: *event, what: What::Closed(time) })
    }

    /// Feeds a capacity field's trend; opens, updates or closes its exhaustion event (whose score
    /// is the forecast's confidence). Also returns the risk a forecast within the horizon makes:
    /// `confidence × (1 − time left / horizon)`.
    fn forecast(
        &mut self,
        config: &PredictConfig,
        series: SeriesId,
        time: i64,
        value: f64,
    ) -> (Option<Change>, Option<f64>) {
        let Some(capacity) = self.capacity.as_mut() else { return (None, None) };
        let Some(forecast) = capacity.trend.add(time, value, capacity.limit, nanos(config.trend_window)) else {
            return (None, None);
        };
        let horizon = nanos(config.horizon);
        let risk = forecast.and_then(|f| {
            let left = (f.exhaustion.saturating_sub(time) as f64 / horizon as f64).max(0.0);
            (left < 1.0).then_some(f.confidence * (1.0 - left))
        });
        (self.exhaustion_event(config, series, time, value, forecast), risk)
    }

    /// Opens, updates or closes the exhaustion event of a capacity field after a new forecast.
    fn exhaustion_event(
        &mut self,
        config: &PredictConfig,
        series: SeriesId,
        time: i64,
        value: f64,
        forecast: Option<super::forecast::Forecast>,
    ) -> Option<Change> {
        let capacity = self.capacity.as_mut()?;
        let horizon = nanos(config.horizon);
        let soon =
            forecast.filter(|f| f.exhaustion.saturating_sub(time) <= horizon && f.confidence >= config.min_confidence);
        let far = forecast.is_none_or(|f| f.exhaustion.saturating_sub(time) > horizon.saturating_add(horizon / 2));
        match (&mut capacity.event, soon) {
            (None, Some(f)) => {
                let event = OpenEvent {
                    id: event_id(series, "exhaustion", &self.name, time),
                    start: time,
                    peak_time: time,
                    peak_score: f.confidence,
                    peak_value: value,
                    quiet_since: None,
                    forecast: Some(f.exhaustion),
                };
                capacity.event = Some(event.clone());
                Some(Change { kind: "exhaustion", event, what: What::Opened })
            }
            (Some(_), _) if far => {
                let event = capacity.event.take()?;
                Some(Change { kind: "exhaustion", event, what: What::Closed(time) })
            }
            (Some(event), _) => {
                let f = forecast?;
                if f.confidence > event.peak_score {
                    (event.peak_time, event.peak_score) = (time, f.confidence);
                }
                event.peak_value = value;
                event.forecast = Some(f.exhaustion);
                Some(Change { kind: "exhaustion", event: event.clone(), what: What::Updated(time) })
            }
            (None, None) => None,
        }
    }
}

/// Event rows, column by column.
#[derive(Debug, Default)]
struct EventRows {
    event_id: UInt64Builder,
    kind: StringBuilder,
    series_id: UInt64Builder,
    series_key: StringBuilder,
    measurement: StringBuilder,
    region: StringBuilder,
    entity: StringBuilder,
    field: StringBuilder,
    start: TimestampNanosecondBuilder,
    end: TimestampNanosecondBuilder,
    peak_time: TimestampNanosecondBuilder,
    peak_score: Float64Builder,
    peak_value: Float64Builder,
    state: StringBuilder,
    forecast: TimestampNanosecondBuilder,
    change: StringBuilder,
    updated: TimestampNanosecondBuilder,
    len: usize,
}

impl EventRows {
    fn append(
        &mut self,
        series_id: SeriesId,
        (key, measurement, region, entity): SeriesInfo<'_>,
        field: &str,
        change: &Change,
    ) {
        let Change { kind, event, what } = change;
        let (end, state, name, at) = match *what {
            What::Opened => (None, "open", "opened", event.start),
            What::Updated(at) => (None, "open", "updated", at),
            What::Closed(end) => (Some(end), "closed", "closed", end),
        };
        self.event_id.append_value(event.id);
        self.kind.append_value(kind);
        self.series_id.append_value(series_id);
        self.series_key.append_value(key);
        self.measurement.append_value(measurement);
        self.region.append_value(region);
        self.entity.append_option(entity);
        self.field.append_value(field);
        self.start.append_value(event.start);
        self.end.append_option(end);
        self.peak_time.append_value(event.peak_time);
        self.peak_score.append_value(event.peak_score);
        self.peak_value.append_value(event.peak_value);
        self.state.append_value(state);
        self.forecast.append_option(event.forecast);
        self.change.append_value(name);
        self.updated.append_value(at);
        self.len += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.series_id.finish()),
            Arc::new(self.series_key.finish()),
            Arc::new(self.measurement.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.entity.finish()),
            Arc::new(self.field.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.peak_time.finish()),
            Arc::new(self.peak_score.finish()),
            Arc::new(self.peak_value.finish()),
            Arc::new(self.state.finish()),
            Arc::new(self.forecast.finish()),
            Arc::new(self.change.finish()),
            Arc::new(self.updated.finish()),
        ];
        RecordBatch::try_new(prediction_schema(), columns)
    }
}

/// A copy of a predictor's detectors and open events, taken at a checkpoint barrier and
/// encoded by the checkpointer.
#[derive(Debug, Clone)]
pub struct PredictorState(SeriesMap<Arc<SeriesState>>);

impl PredictorState {
    /// Writes it into `w` as [`Predictor::encode`] does, letting go of each series once written
    /// (see [`crate::window::Windows::encode`]).
    pub fn encode_into(self, w: &mut Writer) {
        encode_series(self.0, w);
    }
}

impl Predictor {
    /// A copy of its state, for a checkpoint.
    pub fn state(&self) -> PredictorState {
        PredictorState(self.series.clone())
    }

    /// Its state as bytes, for a checkpoint: every series' detectors and open events.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.state().encode_into(&mut w);
        w.into_bytes()
    }

    /// Restores what [`Predictor::encode`] wrote.
    ///
    /// # Errors
    /// When the bytes are cut short or damaged.
    pub fn decode(bytes: &[u8], config: Arc<PredictConfig>) -> Result<Self, SnapshotError> {
        let mut r = Reader::new(bytes);
        let predictor = Self::decode_from(&mut r, config)?;
        r.finish()?;
        Ok(predictor)
    }

    /// Reads what [`Predictor::encode`] wrote from `r`, leaving it after the state.
    ///
    /// # Errors
    /// When the bytes are cut short or damaged.
    pub fn decode_from(r: &mut Reader<'_>, config: Arc<PredictConfig>) -> Result<Self, SnapshotError> {
        let mut predictor = Self::new(config);
        for _ in 0..r.count()? {
            let id = r.i64()? as u64;
            let (key, measurement, region) = (r.str()?.into(), r.str()?.into(), r.str()?.into());
            let entity = match r.u8()? {
                0 => None,
                1 => Some(r.str()?.into()),
                _ => return Err(r.corrupt()),
            };
            let mut fields = Vec::new();
            for _ in 0..r.count()? {
                let name = intern(&mut predictor.names, r.str()?);
                let last_time = r.i64()?;
                let detector = Detector::decode(r)?;
                let event = decode_event(r)?.map(Box::new);
                let capacity = match r.u8()? {
                    0 => None,
                    1 => {
                        Some(Box::new(Capacity { limit: r.f64()?, trend: Trend::decode(r)?, event: decode_event(r)? }))
                    }
                    _ => return Err(r.corrupt()),
                };
                fields.push(FieldState { name, detector, last_time, event, capacity });
            }
            predictor.adopt(id, Arc::new(SeriesState { key, measurement, region, entity, fields }));
        }
        Ok(predictor)
    }

    /// Takes over a series' detectors and open events.
    fn adopt(&mut self, id: SeriesId, state: Arc<SeriesState>) {
        for field in &state.fields {
            self.totals.open += u64::from(field.event.is_some());
            if field.event.is_some() {
                self.open_anomalies.insert(id);
                self.next_quiet_close = i64::MIN; // look at it at the next round
            }
            self.totals.open += u64::from(field.capacity.as_ref().is_some_and(|c| c.event.is_some()));
        }
        self.series.insert(id, state);
    }

    /// Moves every series' state into `targets[place(series)]`: how a checkpoint taken with one
    /// partition count is restored under another.
    pub fn move_into(self, targets: &mut [Predictor], place: impl Fn(SeriesId) -> usize) {
        for (id, state) in self.series {
            targets[place(id)].adopt(id, state);
        }
    }
}

/// Writes every series' detectors and open events, in series order (so equal states encode
/// equally).
fn encode_series(series: SeriesMap<Arc<SeriesState>>, w: &mut Writer) {
    w.varint(series.len() as u64);
    let mut sorted: Vec<(SeriesId, Arc<SeriesState>)> = series.into_iter().collect();
    sorted.sort_unstable_by_key(|(id, _)| *id);
    for (id, state) in sorted {
        w.i64(id as i64);
        w.str(&state.key);
        w.str(&state.measurement);
        w.str(&state.region);
        match &state.entity {
            None => w.u8(0),
            Some(entity) => {
                w.u8(1);
                w.str(entity);
            }
        }
        w.varint(state.fields.len() as u64);
        for field in &state.fields {
            w.str(&field.name);
            w.i64(field.last_time);
            field.detector.encode(w);
            encode_event(w, field.event.as_deref());
            match &field.capacity {
                None => w.u8(0),
                Some(c) => {
                    w.u8(1);
                    w.f64(c.limit);
                    c.trend.encode(w);
                    encode_event(w, c.event.as_ref());
                }
            }
        }
        w.boundary();
    }
}

fn encode_event(w: &mut Writer, event: Option<&OpenEvent>) {
    let Some(e) = event else {
        w.u8(0);
        return;
    };
    w.u8(1);
    w.i64(e.id as i64);
    w.i64(e.start);
    w.i64(e.peak_time);
    w.f64(e.peak_score);
    w.f64(e.peak_value);
    w.option_i64(e.quiet_since);
    w.option_i64(e.forecast);
}

fn decode_event(r: &mut Reader<'_>) -> Result<Option<OpenEvent>, SnapshotError> {
    Ok(match r.u8()? {
        0 => None,
        1 => Some(OpenEvent {
            id: r.i64()? as u64,
            start: r.i64()?,
            peak_time: r.i64()?,
            peak_score: r.f64()?,
            peak_value: r.f64()?,
            quiet_since: r.option_i64()?,
            forecast: r.option_i64()?,
        }),
        _ => return Err(r.corrupt()),
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Float64Array, StringArray, TimestampNanosecondArray};
    use augur_ingest::line_protocol::Parser;
    use augur_ingest::series::SeriesHasher;
    use augur_ingest::{PointBatch, Precision, RegionRule};

    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    /// A steady CPU series of `minutes` points with `spike` added over `spike_at` (minute indices).
    fn series(minutes: i64, spike_at: std::ops::Range<i64>) -> PointBatch {
        let regions = RegionRule { tag: "region".into(), default: "default".into() };
        let mut batch = PointBatch::new();
        let mut text = String::new();
        for m in 0..minutes {
            let base = 40.0 + ((m * 7919) % 11) as f64 * 0.3;
            let value = if spike_at.contains(&m) { base + 50.0 } else { base };
            text.push_str(&format!("cpu,host=web1,region=eu usage={value},state=\"ok\" {}\n", m * MINUTE));
        }
        let mut parser = Parser::new(text.as_bytes(), Precision::Nanoseconds, 0, 1);
        while let Some(line) = parser.next() {
            let line = line.unwrap();
            let id = SeriesHasher::default().id_of(&line);
            batch.push_line(&line, id, &regions);
        }
        batch
    }

    fn run(predictor: &mut Predictor, batch: &PointBatch) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for point in batch.iter() {
            predictor.observe(&point);
            out.extend(predictor.finish().unwrap());
        }
        out
    }

    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
        batch.column_by_name(name).unwrap().as_any().downcast_ref::<T>().unwrap()
    }

    #[test]
    fn one_incident_is_one_event_with_a_start_a_peak_and_an_end() {
        let mut predictor = Predictor::new(Arc::new(PredictConfig::default()));
        let rows = run(&mut predictor, &series(600, 400..405));
        let states: Vec<(String, i64, Option<i64>, f64, f64)> = rows
            .iter()
            .flat_map(|b| {
                let (state, start, end) = (
                    column::<StringArray>(b, "state"),
                    column::<TimestampNanosecondArray>(b, "start"),
                    column::<TimestampNanosecondArray>(b, "end"),
                );
                let (score, value) = (column::<Float64Array>(b, "peak_score"), column::<Float64Array>(b, "peak_value"));
                (0..b.num_rows())
                    .map(|i| {
                        let end = end.is_valid(i).then(|| end.value(i));
                        (state.value(i).to_owned(), start.value(i), end, score.value(i), value.value(i))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(states.len(), 2, "an open row and a closed row: {states:?}");
        let (open, closed) = (&states[0], &states[1]);
        assert_eq!((open.0.as_str(), open.1, open.2), ("open", 400 * MINUTE, None));
        assert_eq!((closed.0.as_str(), closed.1), ("closed", 400 * MINUTE));
        let end = closed.2.expect("a closed event has an end");
        // Scores fall under `clear` during the spike already (its first value is the surprise);
        // the event closes once they stayed under it for the 5-minute cool-down.
        assert!((405 * MINUTE..=415 * MINUTE).contains(&end), "closes after the cool-down: minute {}", end / MINUTE);
        assert!(closed.3 >= 0.5 && closed.4 > 80.0, "the peak is the spike: {closed:?}");
        assert_eq!(predictor.totals(), PredictTotals { scored: 600, opened: 1, closed: 1, open: 0 });
        assert_eq!(column::<StringArray>(&rows[0], "entity").value(0), "web1");
        assert_eq!(column::<StringArray>(&rows[0], "field").value(0), "usage", "strings are not scored");
    }

    #[test]
    fn a_series_that_goes_silent_closes_its_event_after_the_cool_down() {
        let mut predictor = Predictor::new(Arc::new(PredictConfig::default()));
        // The spike is the last thing the host sends.
        let rows = run(&mut predictor, &series(401, 400..405));
        assert_eq!(predictor.totals().open, 1, "{rows:?}");
        predictor.close_quiet(403 * MINUTE);
        assert!(predictor.finish().unwrap().is_none(), "not quiet long enough yet");
        predictor.close_quiet(420 * MINUTE);
        let closed = predictor.finish().unwrap().expect("a closed row");
        assert_eq!(column::<StringArray>(&closed, "change").value(0), "closed");
        assert_eq!(column::<TimestampNanosecondArray>(&closed, "end").value(0), 405 * MINUTE, "last value + cool-down");
        assert_eq!(predictor.totals(), PredictTotals { scored: 401, opened: 1, closed: 1, open: 0 });
    }

    #[test]
    fn state_survives_encoding_and_scoring_goes_on_the_same() {
        let config = Arc::new(PredictConfig::default());
        let (first, second) = (series(420, 400..405), series(600, 400..405));
        let mut whole = Predictor::new(config.clone());
        let expected = run(&mut whole, &second);
        let mut before = Predictor::new(config.clone());
        let mut got = run(&mut before, &first);
        let mut after = Predictor::decode(&before.encode(), config).unwrap();
        assert_eq!(after.series, before.series);
        // The rest, point by point, through the restored predictor.
        for point in second.iter().skip(420) {
            after.observe(&point);
            got.extend(after.finish().unwrap());
        }
        assert_eq!(got, expected, "a restored predictor emits what the uninterrupted one did");
        assert!(Predictor::decode(&before.encode()[..10], Arc::new(PredictConfig::default())).is_err());
    }
}
