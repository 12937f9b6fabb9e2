//! Per-tenant limits: a rate of points with a burst, and a budget of new series per hour.
//!
//! The rate is a token bucket that may go into debt: a request is let in while its tenant's
//! bucket is above zero, and its points are charged after parsing (their number is not known
//! before). One large request can therefore overdraw the bucket; the tenant then waits until the
//! debt is paid, so the long-run rate holds without refusing a request larger than the burst.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::LimitsConfig;
use crate::series::SeriesId;

/// Buckets kept before full ones (idle tenants) are dropped.
const MAX_IDLE_BUCKETS: usize = 10_000;
/// The series budget's period.
const HOUR: Duration = Duration::from_secs(3600);
/// Locks over each tenant's known series: parsers of one tenant rarely wait for each other.
const SERIES_SHARDS: usize = 16;

/// The limits every listener applies.
#[derive(Debug, Default)]
pub struct Limits {
    /// Points per second, per tenant.
    pub rate: RateLimiter,
    /// `None` when `limits.new-series-per-hour` is 0.
    pub series: Option<SeriesBudget>,
}

impl Limits {
    /// The limits `config` sets.
    pub fn new(config: &LimitsConfig) -> Self {
        let series = (config.new_series_per_hour > 0).then(|| SeriesBudget::new(config.new_series_per_hour));
        Self { rate: RateLimiter::new(Rate::new(config.points_per_second, config.burst_points)), series }
    }
}

/// A rate of points with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Points per second on average.
    pub per_second: u64,
    /// Points at once above it.
    pub burst: u64,
}

impl Rate {
    /// `per_second` with `burst` (0: one second's worth); `None` when `per_second` is 0 (no limit).
    pub fn new(per_second: u64, burst: u64) -> Option<Self> {
        (per_second > 0).then_some(Self { per_second, burst: if burst == 0 { per_second } else { burst } })
    }
}

/// Over the rate: how long to wait, and the limit for the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate limit: `{key}` may write {per_second} points/s (burst {burst}); retry in {}", humantime_serde::re::humantime::format_duration(*wait))]
pub struct RateLimited {
    /// The tenant or client.
    pub key: Arc<str>,
    /// Its rate.
    pub per_second: u64,
    /// Its burst.
    pub burst: u64,
    /// Until its bucket is above zero again (rounded up to whole milliseconds).
    pub wait: Duration,
}

/// Token buckets per tenant.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// The rate of tenants without one of their own; `None`: unlimited.
    default: Option<Rate>,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Points that may still be written; negative while in debt.
    level: f64,
    at: Instant,
}

impl Bucket {
    /// The level now, refilled at `rate` since it was last touched, capped at the burst.
    fn refill(&mut self, rate: Rate, now: Instant) {
        let earned = now.duration_since(self.at).as_secs_f64() * rate.per_second as f64;
        self.level = (self.level + earned).min(rate.burst as f64);
        self.at = now;
    }
}

impl RateLimiter {
    /// Buckets at `default` for tenants without a rate of their own (`None`: unlimited).
    pub fn new(default: Option<Rate>) -> Self {
        Self { default, buckets: Mutex::default() }
    }

    /// Whether `key` may write now, at its own rate if it has one (a token's), else the default.
    ///
    /// # Errors
    /// [`RateLimited`] while its bucket is empty or in debt.
    pub fn check(&self, key: &Arc<str>, own: Option<Rate>) -> Result<(), RateLimited> {
        let Some(rate) = own.or(self.default) else { return Ok(()) };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_IDLE_BUCKETS && !buckets.contains_key(key) {
            // Forget buckets that were full long enough ago (idle tenants, departed addresses).
            buckets.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60) || b.level < 0.0);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket { level: rate.burst as f64, at: now });
        bucket.refill(rate, now);
        if bucket.level > 0.0 {
            return Ok(());
        }
        let wait = Duration::from_millis(((-bucket.level / rate.per_second as f64) * 1000.0).ceil() as u64 + 1);
        Err(RateLimited { key: key.clone(), per_second: rate.per_second, burst: rate.burst, wait })
    }

    /// Takes `points` from `key`'s bucket (it may go into debt).
    pub fn charge(&self, key: &Arc<str>, own: Option<Rate>, points: usize) {
        let Some(rate) = own.or(self.default) else { return };
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(key.clone()).or_insert(Bucket { level: rate.burst as f64, at: now });
        bucket.refill(rate, now);
        bucket.level -= points as f64;
    }
}

/// How many new series each tenant may create per hour.
#[derive(Debug)]
pub struct SeriesBudget {
    per_hour: u64,
    tenants: Mutex<HashMap<Arc<str>, Arc<TenantSeries>>>,
}

impl SeriesBudget {
    /// `per_hour` new series per tenant.
    pub fn new(per_hour: u64) -> Self {
        Self { per_hour, tenants: Mutex::default() }
    }

    /// The series `tenant` has created.
    pub fn tenant(&self, tenant: &Arc<str>) -> Arc<TenantSeries> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant.clone())
            .or_insert_with(|| {
                Arc::new(TenantSeries {
                    name: tenant.clone(),
                    per_hour: self.per_hour,
                    known: std::array::from_fn(|_| Mutex::default()),
                    window: Mutex::new(Window { start: Instant::now(), created: 0 }),
                })
            })
            .clone()
    }
}

/// Series ids are already hashes: hashing them again is wasted time.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type KnownSeries = HashSet<SeriesId, BuildHasherDefault<IdHasher>>;

/// One tenant's known series (16 bytes each, kept for the server's life) and this hour's count.
#[derive(Debug)]
pub struct TenantSeries {
    name: Arc<str>,
    per_hour: u64,
    known: [Mutex<KnownSeries>; SERIES_SHARDS],
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    created: u64,
}

/// A new series over the tenant's budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("series limit: tenant `{tenant}` already created {limit} new series this hour (limits.new-series-per-hour); lines of known series are still accepted")]
pub struct SeriesLimited {
    /// The tenant.
    pub tenant: String,
    /// Its budget per hour.
    pub limit: u64,
}

impl TenantSeries {
    /// Whether a point of `series` may be stored: always when the series is known, else when
    /// this hour's budget has room (the series is then known).
    ///
    /// # Errors
    /// [`SeriesLimited`] for a new series over the budget.
    pub fn admit(&self, series: SeriesId) -> Result<(), SeriesLimited> {
        let mut known =
            self.known[(series >> 60) as usize % SERIES_SHARDS].lock().unwrap_or_else(PoisonError::into_inner);
        if known.contains(&series) {
            return Ok(());
        }
        {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            if window.start.elapsed() >= HOUR {
                *window = Window { start: Instant::now(), created: 0 };
            }
            if window.created >= self.per_hour {
                return Err(SeriesLimited { tenant: self.name.to_string(), limit: self.per_hour });
            }
            window.created += 1;
        }
        known.insert(series);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lets_a_burst_through_then_charges_the_debt() {
        let limiter = RateLimiter::new(Rate::new(1000, 2000));
        let key: Arc<str> = "fleet".into();
        assert!(limiter.check(&key, None).is_ok());
        limiter.charge(&key, None, 5000); // one large request overdraws by 3000
        let limited = limiter.check(&key, None).unwrap_err();
        assert!(limited.wait > Duration::from_millis(2900) && limited.wait < Duration::from_millis(3100), "{limited}");
        assert!(limited.to_string().contains("1000 points/s (burst 2000)"), "{limited}");
        let other: Arc<str> = "other".into();
        assert!(limiter.check(&other, None).is_ok(), "another tenant has its own bucket");
        let own = Rate::new(100, 0);
        assert_eq!(own, Some(Rate { per_second: 100, burst: 100 }));
        limiter.charge(&other, own, 300);
        assert!(limiter.check(&other, own).unwrap_err().to_string().contains("100 points/s (burst 100)"));
        let unlimited = RateLimiter::new(None);
        unlimited.charge(&key, None, 1 << 40);
        assert!(unlimited.check(&key, None).is_ok(), "no default rate: only tokens with their own are limited");
    }

    #[test]
    fn known_series_pass_and_new_ones_stop_at_the_budget() {
        let budget = SeriesBudget::new(3);
        let tenant = budget.tenant(&"acme".into());
        for id in [1, 2, 3, 1, 2, 3] {
            assert!(tenant.admit(id << 59).is_ok());
        }
        let refused = tenant.admit(4).unwrap_err();
        assert!(refused.to_string().contains("tenant `acme` already created 3 new series"), "{refused}");
        assert!(tenant.admit(2 << 59).is_ok(), "known series still pass");
        assert!(budget.tenant(&"other".into()).admit(4).is_ok(), "budgets are per tenant");
    }
}
