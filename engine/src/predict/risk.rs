//! Per-entity failure risk: every host (the entity tag's value) gets a risk in [0, 1] from its
//! series' recent anomaly scores and exhaustion forecasts, decaying with event time.
//!
//! A contribution is an anomaly score (from 0.3: lower ones are everyday noise) or, for a capacity
//! field forecast to run out within the horizon, `confidence × (1 − time left / horizon)`. An
//! entity's risk is the largest contribution, each decayed by half every `half-life` of event time
//! since it came: one loud signal is enough to rank a host, and quiet hosts fade back to 0. The
//! partitions hand their contributions to one shared board once per tick (a host's series are
//! spread over partitions), which answers `GET /api/v1/risk` with the top hosts per region.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// Anomaly scores under this do not count.
pub const MIN_ANOMALY_SCORE: f64 = 0.3;

/// One signal about an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The entity's region.
    pub region: Arc<str>,
    /// The entity (host).
    pub entity: Arc<str>,
    /// Event time (ns).
    pub time: i64,
    /// In [0, 1].
    pub risk: f64,
    /// Which series and field said so.
    pub series: Arc<str>,
    /// The series' measurement.
    pub measurement: Arc<str>,
    /// The field.
    pub field: Arc<str>,
    /// `anomaly` or `exhaustion`.
    pub kind: &'static str,
}

/// An entity's risk as `GET /api/v1/risk` returns it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RiskRow {
    /// The region.
    pub region: String,
    /// The entity (host).
    pub entity: String,
    /// The risk now, in [0, 1].
    pub risk: f64,
    /// The series, field and kind of the strongest signal.
    pub series: String,
    /// The field.
    pub field: String,
    /// `anomaly` or `exhaustion`.
    pub kind: String,
}

#[derive(Debug)]
struct Entry {
    /// The strongest contribution, as it was when it came.
    top: Contribution,
    /// The risk last reported as a change, and when (it decays like any risk).
    reported: (f64, i64),
}

/// A host's risk changes by at least this much before the change is reported to the stores.
pub const REPORTED_CHANGE: f64 = 0.1;

/// The risk of every entity seen, shared by the partitions.
#[derive(Debug)]
pub struct RiskBoard {
    half_life: f64,
    state: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    entities: HashMap<(Arc<str>, Arc<str>), Entry>,
    /// The newest event time of any contribution: "now" for the decay.
    latest: i64,
}

impl RiskBoard {
    /// A board whose contributions halve every `half_life` ns of event time.
    pub fn new(half_life: i64) -> Self {
        Self { half_life: half_life.max(1) as f64, state: Mutex::default() }
    }

    fn decayed(&self, c: &Contribution, now: i64) -> f64 {
        self.decay(c.risk, c.time, now)
    }

    fn decay(&self, risk: f64, since: i64, now: i64) -> f64 {
        risk * 0.5f64.powf(now.saturating_sub(since).max(0) as f64 / self.half_life)
    }

    /// Takes a partition's contributions, and its event time (`now`, its watermark): the decay
    /// runs to the newest event time of any partition. Returns the contributions that changed a
    /// host's risk by at least [`REPORTED_CHANGE`] since it was last reported (a risk change to
    /// write to the stores).
    pub fn add(&self, contributions: impl IntoIterator<Item = Contribution>, now: i64) -> Vec<Contribution> {
        let mut changes = Vec::new();
        let mut board = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Never past the wall clock: one host with a clock ahead must not fade every other.
        let wall = augur_storage::now_nanos();
        board.latest = board.latest.max(now.min(wall));
        for c in contributions {
            board.latest = board.latest.max(c.time.min(wall));
            let latest = board.latest;
            let decayed = self.decayed(&c, latest);
            match board.entities.get_mut(&(c.region.clone(), c.entity.clone())) {
                Some(entry) if self.decayed(&entry.top, latest) >= decayed => {}
                Some(entry) => {
                    let (reported, at) = entry.reported;
                    if (decayed - self.decay(reported, at, latest)).abs() >= REPORTED_CHANGE {
                        entry.reported = (decayed, latest);
                        changes.push(c.clone());
                    }
                    entry.top = c;
                }
                None => {
                    let reported = if decayed >= REPORTED_CHANGE {
                        changes.push(c.clone());
                        (decayed, latest)
                    } else {
                        (0.0, latest)
                    };
                    board.entities.insert((c.region.clone(), c.entity.clone()), Entry { top: c, reported });
                }
            }
        }
        changes
    }

    /// The `n` riskiest entities (of `region`, or all), riskiest first, at the newest event time.
    pub fn top(&self, region: Option<&str>, n: usize) -> Vec<RiskRow> {
        let board = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<RiskRow> = board
            .entities
            .iter()
            .filter(|((r, _), _)| region.is_none_or(|want| **r == *want))
            .map(|((region, entity), entry)| RiskRow {
                region: region.to_string(),
                entity: entity.to_string(),
                risk: self.decayed(&entry.top, board.latest),
                series: entry.top.series.to_string(),
                field: entry.top.field.to_string(),
                kind: entry.top.kind.to_owned(),
            })
            .collect();
        rows.sort_by(|a, b| b.risk.total_cmp(&a.risk).then_with(|| a.entity.cmp(&b.entity)));
        rows.truncate(n);
        rows
    }

    /// Entities whose risk is at least `level` now.
    pub fn count_at_least(&self, level: f64) -> usize {
        let board = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        board.entities.values().filter(|e| self.decayed(&e.top, board.latest) >= level).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    fn signal(region: &str, entity: &str, time: i64, risk: f64) -> Contribution {
        Contribution {
            region: region.into(),
            entity: entity.into(),
            time,
            risk,
            series: format!("cpu,host={entity}").into(),
            measurement: "cpu".into(),
            field: "usage".into(),
            kind: "anomaly",
        }
    }

    #[test]
    fn the_strongest_recent_signal_ranks_hosts_and_old_ones_fade() {
        let board = RiskBoard::new(HOUR);
        let changes = board
            .add([signal("eu", "a", 0, 0.9), signal("eu", "b", 2 * HOUR, 0.6), signal("us", "c", 2 * HOUR, 0.8)], 0);
        assert_eq!(changes.len(), 3, "a host's first risk is a change");
        let top = board.top(Some("eu"), 10);
        assert_eq!(top.iter().map(|r| r.entity.as_str()).collect::<Vec<_>>(), ["b", "a"], "a's 0.9 halved twice");
        assert!((top[1].risk - 0.225).abs() < 1e-9, "{top:?}");
        assert_eq!(board.top(None, 1)[0].entity, "c");
        // A weaker new signal does not lower a host's risk; a stronger one replaces it.
        let changes = board.add([signal("eu", "b", 2 * HOUR, 0.3), signal("eu", "a", 2 * HOUR, 0.95)], 0);
        assert_eq!(changes.iter().map(|c| &*c.entity).collect::<Vec<_>>(), ["a"], "b's weaker signal changes nothing");
        let top = board.top(Some("eu"), 10);
        assert_eq!((top[0].entity.as_str(), top[0].risk), ("a", 0.95));
        assert_eq!((top[1].entity.as_str(), top[1].risk), ("b", 0.6));
        assert_eq!(board.count_at_least(0.5), 3);
        // Time passes in another partition: every host fades.
        assert!(board.add([], 4 * HOUR).is_empty(), "fading alone is not reported");
        assert!((board.top(Some("eu"), 1)[0].risk - 0.95 / 4.0).abs() < 1e-9);
    }
}
