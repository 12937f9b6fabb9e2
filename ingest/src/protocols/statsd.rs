//! StatsD, as etsy's daemon takes it over UDP: `<name>:<value>|<type>[|@<rate>][|#<tags>]`, one
//! or more lines per datagram, aggregated per flush interval into one point per metric.
//!
//! Types: `c` counter, `g` gauge (`+N` / `-N` change the last value), `ms`, `h` and `d` timers
//! (all alike), `s` set. `@rate` (0 < rate ≤ 1) says the client sent one in 1/rate: counters add
//! value/rate, timers count each value 1/rate times. Tags come DogStatsD's way (`|#env:prod,web`,
//! a bare tag is `web=true`) or InfluxDB's (`cpu,host=web1:5|g`).
//!
//! At each flush (docs/protocols.md) every metric seen since the last is a point of the
//! measurement named as the metric, tagged with its tags and `metric_type` (`counter`, `gauge`,
//! `timing`, `set`), with float fields: counters and gauges `value` (the interval's sum, the last
//! value), sets `value` (distinct members), timers `count`, `sum`, `mean`, `lower`, `upper`,
//! `stddev` and one `p<N>` per configured percentile (nearest rank; `p99_9` for 99.9) over up to
//! 10,000 samples drawn uniformly from the interval's. StatsD is fire-and-forget: what is
//! aggregated lives in memory until its flush, so a crash loses at most one interval, as with
//! any StatsD server.

use std::collections::{HashMap, HashSet};

use super::Converted;
use crate::point::FieldValue;

/// Samples a timer keeps per interval for its percentiles; count, sum, lower and upper are exact.
const MAX_SAMPLES: usize = 10_000;
/// Error messages an [`Added`] keeps.
const MAX_ERRORS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
    Timing,
    Set,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Timing => "timing",
            Self::Set => "set",
        }
    }
}

/// Tags as pairs.
type Tags = Vec<(String, String)>;

/// A metric's identity: name, type and tags (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    kind: Kind,
    tags: Tags,
}

#[derive(Debug)]
enum Aggregate {
    Counter(f64),
    Gauge(f64),
    Timing(Timing),
    Set(HashSet<String>),
}

#[derive(Debug, Default)]
struct Timing {
    /// Corrected for sample rates.
    count: f64,
    /// Values received.
    seen: u64,
    sum: f64,
    sum_of_squares: f64,
    lower: f64,
    upper: f64,
    samples: Vec<f64>,
}

/// What one datagram added.
#[derive(Debug, Default, PartialEq)]
pub struct Added {
    /// Lines aggregated.
    pub metrics: usize,
    /// Lines refused.
    pub rejected: usize,
    /// The first refusals, each naming its line and why.
    pub errors: Vec<String>,
}

/// Aggregates StatsD metrics between flushes.
#[derive(Debug)]
pub struct Aggregator {
    max_keys: usize,
    percentiles: Vec<f64>,
    pending: HashMap<Key, Aggregate>,
    /// Every gauge's last value, for relative updates in later intervals (at most `max_keys`).
    gauges: HashMap<Key, f64>,
    /// xorshift state for the timers' reservoirs: deterministic, and enough for sampling.
    random: u64,
}

impl Aggregator {
    /// Holds at most `max_keys` metrics between two flushes (more are refused until the next);
    /// timers report `percentiles` (each in (0, 100]).
    pub fn new(max_keys: usize, percentiles: Vec<f64>) -> Self {
        Self { max_keys, percentiles, pending: HashMap::new(), gauges: HashMap::new(), random: 0x9E37_79B9_7F4A_7C15 }
    }

    /// Metrics pending for the next flush.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Parses one datagram and aggregates its lines; bad lines are refused alone.
    pub fn add(&mut self, datagram: &[u8]) -> Added {
        let mut added = Added::default();
        for (index, line) in datagram.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.add_line(line) {
                Ok(()) => added.metrics += 1,
                Err(reason) => {
                    added.rejected += 1;
                    if added.errors.len() < MAX_ERRORS {
                        let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
                        added.errors.push(format!("line {} `{text}`: {reason}", index + 1));
                    }
                }
            }
        }
        added
    }

    fn add_line(&mut self, line: &[u8]) -> Result<(), String> {
        let line = std::str::from_utf8(line).map_err(|_| "invalid UTF-8".to_owned())?;
        let (metric, rest) = line.split_once('|').ok_or("expected `name:value|type`")?;
        let (name, value) = metric.rsplit_once(':').ok_or("expected `name:value|type`")?;
        let mut sections = rest.split('|');
        let kind = match sections.next().unwrap_or_default() {
            "c" => Kind::Counter,
            "g" => Kind::Gauge,
            "ms" | "h" | "d" => Kind::Timing,
            "s" => Kind::Set,
            other => return Err(format!("unknown type `{other}`: expected c, g, ms, h, d or s")),
        };
        let mut rate = 1.0;
        let (name, mut tags) = influx_tags(name)?;
        for section in sections {
            if let Some(text) = section.strip_prefix('@') {
                rate = text.parse().map_err(|_| format!("invalid sample rate `{text}`"))?;
                if !(rate > 0.0 && rate <= 1.0) {
                    return Err(format!("sample rate {rate} is not in (0, 1]"));
                }
            } else if let Some(text) = section.strip_prefix('#') {
                for tag in text.split(',').filter(|t| !t.is_empty()) {
                    let (k, v) = tag.split_once(':').unwrap_or((tag, "true"));
                    if k.is_empty() || v.is_empty() {
                        return Err(format!("tag `{tag}`: expected `name:value`"));
                    }
                    tags.push((k.to_owned(), v.to_owned()));
                }
            } else {
                return Err(format!("unexpected `|{section}`: expected `|@rate` or `|#tags`"));
            }
        }
        if name.is_empty() {
            return Err("empty metric name".into());
        }
        tags.sort();
        tags.dedup_by(|a, b| a.0 == b.0);
        let key = Key { name: name.to_owned(), kind, tags };
        let number = || -> Result<f64, String> {
            let v: f64 = value.parse().map_err(|_| format!("invalid value `{value}`: expected a number"))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("value {v} cannot be stored"))
            }
        };
        // Parse before taking a key: a bad line must not use one up.
        let parsed = if kind == Kind::Set { 0.0 } else { number()? };
        if !self.pending.contains_key(&key) && self.pending.len() >= self.max_keys {
            return Err(format!("more than {} metrics in one flush interval (statsd.max-keys)", self.max_keys));
        }
        match kind {
            Kind::Counter => {
                if let Aggregate::Counter(sum) = self.pending.entry(key).or_insert(Aggregate::Counter(0.0)) {
                    *sum += parsed / rate;
                }
            }
            Kind::Gauge => {
                let relative = value.starts_with(['+', '-']);
                let previous = self.gauges.get(&key).copied().unwrap_or(0.0);
                let gauge = if relative { previous + parsed } else { parsed };
                if self.gauges.len() < self.max_keys || self.gauges.contains_key(&key) {
                    self.gauges.insert(key.clone(), gauge);
                }
                self.pending.insert(key, Aggregate::Gauge(gauge));
            }
            Kind::Timing => {
                let random = self.next_random();
                if let Aggregate::Timing(t) =
                    self.pending.entry(key).or_insert_with(|| Aggregate::Timing(Timing::default()))
                {
                    t.add(parsed, rate, random);
                }
            }
            Kind::Set => {
                if let Aggregate::Set(members) =
                    self.pending.entry(key).or_insert_with(|| Aggregate::Set(HashSet::new()))
                {
                    members.insert(value.to_owned());
                }
            }
        }
        Ok(())
    }

    fn next_random(&mut self) -> u64 {
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.random
    }

    /// One point per metric aggregated since the last flush, at `now` (ns); a new interval starts.
    pub fn flush(&mut self, now: i64) -> Converted {
        let mut out = Converted::new("metric");
        for (number, (key, aggregate)) in self.pending.drain().enumerate() {
            let fields: Vec<(String, f64)> = match aggregate {
                Aggregate::Counter(v) | Aggregate::Gauge(v) => vec![("value".into(), v)],
                Aggregate::Set(members) => vec![("value".into(), members.len() as f64)],
                Aggregate::Timing(t) => t.fields(&self.percentiles),
            };
            let mut tags: Vec<(&str, &str)> = key.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            tags.retain(|(k, _)| *k != "metric_type");
            tags.push(("metric_type", key.kind.label()));
            tags.sort_unstable();
            let fields = fields.iter().map(|(k, v)| (k.as_str(), FieldValue::Float(*v)));
            out.point(number + 1, &key.name, tags, fields, Some(now));
        }
        out
    }
}

impl Timing {
    fn add(&mut self, value: f64, rate: f64, random: u64) {
        if self.seen == 0 {
            (self.lower, self.upper) = (value, value);
        }
        self.seen += 1;
        self.count += 1.0 / rate;
        self.sum += value / rate;
        self.sum_of_squares += value * value / rate;
        self.lower = self.lower.min(value);
        self.upper = self.upper.max(value);
        // Reservoir sampling: each value seen so far stays with the same chance.
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(value);
        } else if let Some(slot) = self.samples.get_mut((random % self.seen) as usize) {
            *slot = value;
        }
    }

    fn fields(mut self, percentiles: &[f64]) -> Vec<(String, f64)> {
        let mean = self.sum / self.count;
        let variance = (self.sum_of_squares / self.count - mean * mean).max(0.0);
        let mut fields = vec![
            ("count".to_owned(), self.count),
            ("sum".to_owned(), self.sum),
            ("mean".to_owned(), mean),
            ("lower".to_owned(), self.lower),
            ("upper".to_owned(), self.upper),
            ("stddev".to_owned(), variance.sqrt()),
        ];
        self.samples.sort_by(f64::total_cmp);
        for &p in percentiles {
            let rank = (p / 100.0 * self.samples.len() as f64).ceil() as usize;
            let value = self.samples[rank.clamp(1, self.samples.len()) - 1];
            fields.push((format!("p{p}").replace('.', "_"), value));
        }
        fields
    }
}

/// Splits InfluxDB-style tags off a name: `cpu,host=web1` is `cpu` with `host=web1`.
fn influx_tags(name: &str) -> Result<(&str, Tags), String> {
    let mut parts = name.split(',');
    let name = parts.next().unwrap_or_default();
    let mut tags = Vec::new();
    for tag in parts {
        match tag.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => tags.push((k.to_owned(), v.to_owned())),
            _ => return Err(format!("tag `{tag}`: expected `name=value`")),
        }
    }
    Ok((name, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flushed(aggregator: &mut Aggregator) -> Vec<String> {
        let mut lines: Vec<String> =
            String::from_utf8(aggregator.flush(7).lines).unwrap().lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    #[test]
    fn each_type_aggregates_over_the_interval() {
        let mut a = Aggregator::new(100, vec![50.0, 99.9]);
        let added = a.add(b"hits:1|c\nhits:2|c|@0.5\ntemp:20|g\ntemp:+5|g\nusers:ann|s\nusers:bob|s\nusers:ann|s\n");
        assert_eq!((added.metrics, added.rejected), (7, 0));
        assert_eq!(a.add(b"lat:10|ms\nlat:30|h\nlat:20|d\nlat:40|ms|@0.5").rejected, 0);
        assert_eq!(
            flushed(&mut a),
            [
                "hits,metric_type=counter value=5.0 7",
                "lat,metric_type=timing count=5.0,sum=140.0,mean=28.0,lower=10.0,upper=40.0,stddev=11.661903789690601,p50=20.0,p99_9=40.0 7",
                "temp,metric_type=gauge value=25.0 7",
                "users,metric_type=set value=2.0 7",
            ]
        );
        // A new interval: only what arrives in it, gauges relative to their last value.
        a.add(b"temp:-10|g");
        assert_eq!(flushed(&mut a), ["temp,metric_type=gauge value=15.0 7"]);
        assert!(flushed(&mut a).is_empty());
    }

    #[test]
    fn tags_come_in_both_spellings() {
        let mut a = Aggregator::new(100, vec![]);
        assert_eq!(
            a.add(b"cpu,host=web1,region=eu:5|g\nreq:1|c|#env:prod,canary\nreq:1|c|#canary,env:prod").rejected,
            0
        );
        assert_eq!(
            flushed(&mut a),
            [
                "cpu,host=web1,metric_type=gauge,region=eu value=5.0 7",
                "req,canary=true,env=prod,metric_type=counter value=2.0 7",
            ]
        );
    }

    #[test]
    fn bad_lines_are_named_and_the_key_limit_resets_at_each_flush() {
        let mut a = Aggregator::new(2, vec![]);
        let added = a.add(b"a:1|c\nnocolon|c\nb:x|g\nc:1|q\nd:1|c|@2\ne:1|c|x\n:1|c\nf:1|c\ng:1|c");
        assert_eq!((added.metrics, added.rejected), (2, 7));
        assert_eq!(added.errors[0], "line 2 `nocolon|c`: expected `name:value|type`");
        assert_eq!(added.errors[1], "line 3 `b:x|g`: invalid value `x`: expected a number");
        assert!(added.errors[2].contains("unknown type `q`"), "{:?}", added.errors);
        assert!(added.errors[3].contains("sample rate 2 is not in (0, 1]"), "{:?}", added.errors);
        assert!(added.errors[4].contains("unexpected `|x`"), "{:?}", added.errors);
        assert!(added.errors[5].contains("empty metric name"), "{:?}", added.errors);
        assert!(added.errors[6].contains("more than 2 metrics in one flush interval"), "{:?}", added.errors);
        assert_eq!(flushed(&mut a).len(), 2);
        assert_eq!(a.add(b"g:1|c").rejected, 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Any bytes: each non-blank line is aggregated or refused, never a panic; a flush renders
        /// one line per metric.
        #[test]
        fn any_datagram_is_aggregated_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut a = Aggregator::new(1000, vec![50.0, 99.0]);
            let added = a.add(&bytes);
            let non_blank = bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
            proptest::prop_assert_eq!(added.metrics + added.rejected, non_blank);
            let pending = a.pending();
            let converted = a.flush(1);
            proptest::prop_assert_eq!(converted.lines.iter().filter(|&&b| b == b'\n').count(), pending);
        }

        /// Counters sum as a naive oracle does.
        #[test]
        fn counters_sum_like_the_oracle(values in proptest::collection::vec((0u8..3, -1000i32..1000), 0..50)) {
            let mut a = Aggregator::new(1000, vec![]);
            let mut oracle = [0f64; 3];
            for (name, value) in &values {
                a.add(format!("n{name}:{value}|c").as_bytes());
                oracle[usize::from(*name)] += f64::from(*value);
            }
            for line in String::from_utf8(a.flush(1).lines).unwrap().lines() {
                let name: usize = line[1..2].parse().unwrap();
                let value: f64 = line.split("value=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
                proptest::prop_assert_eq!(value, oracle[name]);
            }
        }
    }
}
