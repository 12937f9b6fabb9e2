//! A partition's event-time watermark: how far event time has surely progressed.

use crate::snapshot::{Reader, SnapshotError, Writer};

/// `max event time seen − allowed lateness`, advanced by the wall clock when the partition is idle.
/// Never moves back.
#[derive(Debug, Clone)]
pub struct Watermark {
    lateness: i64,
    idle_timeout: i64,
    value: i64,
    /// The largest on-time event time seen.
    max_event: Option<i64>,
    /// Wall-clock time of the last point, for the idle rule.
    last_data: Option<i64>,
}

impl Watermark {
    /// A watermark with `allowed_lateness` and `idle_timeout` in ns, before any point.
    pub fn new(allowed_lateness: i64, idle_timeout: i64) -> Self {
        Self { lateness: allowed_lateness, idle_timeout, value: i64::MIN, max_event: None, last_data: None }
    }

    /// The watermark: points older than this are late; windows ending at or before it are closed.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Whether a point at `time` is late.
    pub fn is_late(&self, time: i64) -> bool {
        time < self.value
    }

    /// Accounts for an on-time point at event time `time`.
    pub fn observe(&mut self, time: i64) {
        self.max_event = Some(self.max_event.map_or(time, |max| max.max(time)));
        self.value = self.value.max(time.saturating_sub(self.lateness));
    }

    /// Records that data arrived at wall-clock time `now`.
    pub fn data_arrived(&mut self, now: i64) {
        self.last_data = Some(now);
    }

    /// Applies the idle rule at wall-clock time `now`: after `idle_timeout` without data, event
    /// time is taken to have moved on as far as the wall clock since the last data, so a quiet
    /// partition still closes its windows. Moving by elapsed time rather than jumping to the wall
    /// clock keeps data whose timestamps trail the clock (backfills, skewed hosts) on time. A
    /// partition that never saw data stays put: it has nothing to close.
    pub fn tick(&mut self, now: i64) {
        if let (Some(last), Some(max_event)) = (self.last_data, self.max_event) {
            let idle = now.saturating_sub(last);
            if idle >= self.idle_timeout {
                self.value = self.value.max(max_event.saturating_add(idle).saturating_sub(self.lateness));
            }
        }
    }
}

impl Watermark {
    /// Writes the watermark's state into a snapshot (the settings come from the config).
    pub fn encode(&self, w: &mut Writer) {
        w.i64(self.value);
        w.option_i64(self.max_event);
        w.option_i64(self.last_data);
    }

    /// Takes the later of the two on every count: when partitions are merged, windows another
    /// partition already closed must stay closed (a point behind either is late).
    pub fn merge(&mut self, other: &Watermark) {
        self.value = self.value.max(other.value);
        self.max_event = self.max_event.max(other.max_event);
        self.last_data = self.last_data.max(other.last_data);
    }

    /// Restores what [`Watermark::encode`] wrote into a watermark with these settings.
    ///
    /// # Errors
    /// When the bytes are damaged.
    pub fn decode(r: &mut Reader<'_>, allowed_lateness: i64, idle_timeout: i64) -> Result<Self, SnapshotError> {
        let (value, max_event, last_data) = (r.i64()?, r.option_i64()?, r.option_i64()?);
        Ok(Self { lateness: allowed_lateness, idle_timeout, value, max_event, last_data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_event_time_then_wall_clock_when_idle() {
        let mut w = Watermark::new(10, 100);
        assert!(!w.is_late(i64::MIN + 1));
        w.observe(50);
        assert_eq!(w.value(), 40);
        w.observe(45); // older points never move it back
        assert_eq!(w.value(), 40);
        assert!(w.is_late(39) && !w.is_late(40));
        w.data_arrived(1_000);
        w.tick(1_099);
        assert_eq!(w.value(), 40, "not idle yet");
        w.tick(1_100);
        assert_eq!(w.value(), 50 + 100 - 10, "idle: event time moves on with the wall clock");
    }
}
