//! The demo's injected failures: five hosts with 12 hours of minute-by-minute history ending now,
//! each heading for a failure, and the table of what Augur flagged and how early.

use arrow_array::{Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array};

/// An event found in the predictions: its start, kind, field, and its latest forecast.
type Found = (i64, String, String, Option<i64>);

const MINUTE: i64 = 60_000_000_000;
const HOURS: i64 = 12;

/// One injected failure.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    /// What fails.
    pub(super) name: &'static str,
    /// The host it happens on.
    pub(super) host: String,
    /// When the fault starts showing in the data (ns).
    pub(super) onset: i64,
    /// When the failure happens (ns): a disk full, a crash, a sensor dead.
    pub(super) fails_at: i64,
}

/// A deterministic noise in [-1, 1].
fn noise(i: i64) -> f64 {
    (((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f64 - 1000.0) / 1000.0
}

/// Line protocol of the five hosts, one point a minute for 12 hours up to `end` (ns), and the
/// failures they head for.
pub(super) fn inject(end: i64) -> (String, Vec<Failure>) {
    let start = end - HOURS * 60 * MINUTE;
    let at = |minutes_before_end: i64| end - minutes_before_end * MINUTE;
    let failures = vec![
        Failure { name: "disk filling", host: "demo-disk-1".into(), onset: at(360), fails_at: at(-240) },
        Failure { name: "memory leak", host: "demo-mem-1".into(), onset: at(240), fails_at: at(-120) },
        Failure { name: "CPU runaway", host: "demo-cpu-1".into(), onset: at(90), fails_at: at(60) },
        Failure { name: "temperature drift, then crash", host: "demo-temp-1".into(), onset: at(150), fails_at: at(30) },
        Failure { name: "silent dead sensor", host: "demo-sensor-1".into(), onset: at(120), fails_at: at(120) },
    ];
    let mut body = String::new();
    for m in 0..HOURS * 60 {
        let time = start + m * MINUTE;
        let n = noise(m);
        let rising = |f: &Failure, from: f64, to: f64| {
            if time < f.onset {
                from
            } else {
                from + (to - from) * (time - f.onset) as f64 / (f.fails_at - f.onset) as f64
            }
        };
        let [disk, mem, cpu, temp, sensor] = [0, 1, 2, 3, 4].map(|i| &failures[i]);
        let lines = [
            format!(
                "disk,host={},region=us-east,path=/ used_percent={:.2}",
                disk.host,
                rising(disk, 35.0, 100.0) + 0.3 * n
            ),
            format!("mem,host={},region=us-east used_percent={:.2}", mem.host, rising(mem, 52.0, 100.0) + 0.5 * n),
            format!(
                "cpu,host={},region=eu-west usage_user={:.2}",
                cpu.host,
                if time < cpu.onset { 18.0 + 4.0 * n } else { (97.0 + 2.0 * n).min(100.0) }
            ),
            format!(
                "sensors,host={},region=eu-west temp_c={:.2}",
                temp.host,
                45.0 + 0.4 * n + rising(temp, 0.0, 0.1 * 120.0)
            ),
            format!(
                "sensors,host={},region=ap-south humidity={:.2}",
                sensor.host,
                if time < sensor.onset { 40.0 + 2.0 * n } else { 41.3 }
            ),
        ];
        for (i, line) in lines.iter().enumerate() {
            // The temperature sensor's host crashed: nothing more from it.
            if i == 3 && time >= temp.fails_at {
                continue;
            }
            body.push_str(&format!("{line} {time}\n"));
        }
    }
    (body, failures)
}

/// The first event (any kind) on each failure's host from its onset on, and its first exhaustion
/// forecast, as rows of the table.
pub(super) fn print_table(failures: &[Failure], predictions: &[RecordBatch]) {
    println!("Injected failures (12 hours of history each, ending now):");
    println!(
        "  {:<30} {:<14} {:<8} {:<34} {:<16} exhaustion forecast",
        "failure", "host", "flagged", "first flag", "lead time"
    );
    let mut flagged = 0;
    for failure in failures {
        let (mark, what, lead) = match first_event(failure, predictions, None) {
            Some((start, kind, field, _)) => {
                flagged += 1;
                let lead = failure.fails_at - start;
                let lead =
                    if lead >= 0 { format!("{} before", minutes(lead)) } else { format!("{} after", minutes(-lead)) };
                ("yes", format!("{kind} of {field}"), lead)
            }
            None => ("no", "-".to_owned(), "-".to_owned()),
        };
        let forecast = match first_event(failure, predictions, Some("exhaustion")) {
            Some((start, _, _, Some(forecast))) => format!(
                "{} before, last off by {}",
                minutes(failure.fails_at - start),
                minutes((forecast - failure.fails_at).abs())
            ),
            _ => "-".to_owned(),
        };
        println!("  {:<30} {:<14} {:<8} {:<34} {:<16} {forecast}", failure.name, failure.host, mark, what, lead);
    }
    println!("  flagged {flagged} of {} (a dead sensor is silent: it can only be seen after it died)", failures.len());
}

fn minutes(nanos: i64) -> String {
    let m = nanos / MINUTE;
    if m >= 60 {
        format!("{}h {:02}m", m / 60, m % 60)
    } else {
        format!("{m}m")
    }
}

/// The earliest event (of `kind`, or any but risk rows) on the failure's host that started at or
/// after its onset, with the forecast of its latest row.
fn first_event(failure: &Failure, predictions: &[RecordBatch], kind: Option<&str>) -> Option<Found> {
    let mut first: Option<(u64, Found)> = None;
    let mut latest_forecast = std::collections::HashMap::new();
    for batch in predictions {
        let text = |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let times =
            |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>());
        let ids = batch.column_by_name("event_id").and_then(|c| c.as_any().downcast_ref::<UInt64Array>());
        let (Some(ids), Some(entity), Some(kinds), Some(field), Some(start), Some(forecast)) =
            (ids, text("entity"), text("kind"), text("field"), times("start"), times("forecast"))
        else {
            continue;
        };
        for i in 0..batch.num_rows() {
            let hit = entity.is_valid(i)
                && entity.value(i) == failure.host
                && start.value(i) >= failure.onset
                && kinds.value(i) != "risk"
                && kind.is_none_or(|k| k == kinds.value(i));
            if !hit {
                continue;
            }
            if forecast.is_valid(i) {
                latest_forecast.insert(ids.value(i), forecast.value(i));
            }
            if first.as_ref().is_none_or(|(_, (t, ..))| start.value(i) < *t) {
                let found = (start.value(i), kinds.value(i).to_owned(), field.value(i).to_owned(), None);
                first = Some((ids.value(i), found));
            }
        }
    }
    first.map(|(id, (start, kind, field, _))| (start, kind, field, latest_forecast.get(&id).copied()))
}
