//! Alerts: every event that opens or closes is POSTed as JSON to `[predict] webhook`, retried with
//! backoff, from a task of its own so a slow receiver never holds up the pipelines.
//!
//! One POST per event change: `{"kind", "state", "event_id", "series", "measurement", "region",
//! "entity", "field", "start", "end", "peak_time", "peak_score", "peak_value", "forecast"}` (times
//! in RFC 3339). An exhaustion event's forecast updates are not sent, only its opening and
//! closing. Delivery is at least once: a POST is tried up to 6 times (1 s, doubling, up to 30 s
//! apart), and after a crash the replay may send an event again (`event_id` tells).
//! At most 10,000 alerts wait; beyond that the oldest are dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use arrow_array::{Array, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array};
use augur_storage::exposition;
use augur_storage::schema::RawKey;
use augur_storage::sink::{Epoch, Sink, SinkError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::Notify;
use tracing::warn;

const QUEUE: usize = 10_000;
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Counters of the webhook.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Alerts delivered (2xx).
    pub sent: AtomicU64,
    /// Failed attempts (retried).
    pub failed_attempts: AtomicU64,
    /// Alerts given up after every attempt failed, or dropped from a full queue.
    pub lost: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    alerts: VecDeque<Bytes>,
    /// An alert is being sent.
    busy: bool,
}

/// Where to POST.
#[derive(Debug, Clone)]
struct Target {
    authority: String,
    path: String,
}

/// The webhook, as a sink that only takes predictions.
#[derive(Debug)]
pub struct WebhookSink {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    stats: Arc<WebhookStats>,
}

impl WebhookSink {
    /// Starts delivering to `url` (`http://host:port/path`) on `runtime`.
    ///
    /// # Errors
    /// When the URL is not a plain `http://` one.
    pub fn start(url: &str, timeout: Duration, runtime: &tokio::runtime::Handle) -> anyhow::Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("predict.webhook = {url:?}: only http:// URLs are supported");
        };
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
        if authority.is_empty() {
            bail!("predict.webhook = {url:?}: no host");
        }
        // Without a port, HTTP's.
        let authority = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let target = Target { authority, path };
        let sink = Self { queue: Arc::default(), wake: Arc::new(Notify::new()), stats: Arc::default() };
        let (queue, wake, stats) = (sink.queue.clone(), sink.wake.clone(), sink.stats.clone());
        runtime.spawn(async move { deliver(target, timeout, queue, wake, stats).await });
        Ok(sink)
    }

    /// Counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The alerts of a prediction batch: opened and closed events only.
fn alerts(batch: &RecordBatch) -> Result<Vec<Bytes>, String> {
    let column = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no {name} column"));
    let text =
        |name: &str| column(name)?.as_any().downcast_ref::<StringArray>().ok_or_else(|| format!("{name}: not text"));
    let times = |name: &str| {
        column(name)?.as_any().downcast_ref::<TimestampNanosecondArray>().ok_or_else(|| format!("{name}: not a time"))
    };
    let floats =
        |name: &str| column(name)?.as_any().downcast_ref::<Float64Array>().ok_or_else(|| format!("{name}: not f64"));
    let ids = column("event_id")?.as_any().downcast_ref::<UInt64Array>().ok_or("event_id: not u64")?;
    let change = text("change")?;
    let (kind, state, series, measurement, region, entity, field) = (
        text("kind")?,
        text("state")?,
        text("series_key")?,
        text("measurement")?,
        text("region")?,
        text("entity")?,
        text("field")?,
    );
    let (start, end, peak_time, forecast) = (times("start")?, times("end")?, times("peak_time")?, times("forecast")?);
    let (peak_score, peak_value) = (floats("peak_score")?, floats("peak_value")?);
    let optional_time =
        |array: &TimestampNanosecondArray, i: usize| array.is_valid(i).then(|| augur_storage::rfc3339(array.value(i)));
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        let id = ids.value(i);
        if change.value(i) == "updated" {
            continue;
        }
        let body = json!({
            "kind": kind.value(i),
            "state": state.value(i),
            "event_id": id,
            "series": series.value(i),
            "measurement": measurement.value(i),
            "region": region.value(i),
            "entity": entity.is_valid(i).then(|| entity.value(i)),
            "field": field.value(i),
            "start": augur_storage::rfc3339(start.value(i)),
            "end": optional_time(end, i),
            "peak_time": augur_storage::rfc3339(peak_time.value(i)),
            "peak_score": peak_score.value(i),
            "peak_value": peak_value.value(i),
            "forecast": optional_time(forecast, i),
        });
        out.push(Bytes::from(body.to_string()));
    }
    Ok(out)
}

impl Sink for WebhookSink {
    fn raw(&self, _epoch: Epoch, _key: &RawKey, _batch: RecordBatch) -> Result<(), SinkError> {
        Ok(())
    }

    fn rollups(&self, _epoch: Epoch, _batch: RecordBatch) -> Result<(), SinkError> {
        Ok(())
    }

    fn predictions(&self, _epoch: Epoch, batch: RecordBatch) -> Result<(), SinkError> {
        let new = alerts(&batch).map_err(SinkError::Fatal)?;
        let mut queue = self.lock();
        for alert in new {
            if queue.alerts.len() >= QUEUE {
                queue.alerts.pop_front();
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
            }
            queue.alerts.push_back(alert);
        }
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    /// Waits up to 10 s for the queued alerts to go out (at shutdown); what is left is logged,
    /// never an error that would keep the other stores from flushing.
    fn flush(&self) -> Result<(), SinkError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let queue = self.lock();
            if queue.alerts.is_empty() && !queue.busy {
                return Ok(());
            }
            drop(queue);
            std::thread::sleep(Duration::from_millis(20));
        }
        warn!(queued = self.lock().alerts.len(), "Webhook alerts still queued at shutdown; not sent.");
        Ok(())
    }

    fn render_metrics(&self, out: &mut String) {
        let s = &self.stats;
        for (name, help, value) in [
            ("augur_webhook_alerts_sent_total", "Alerts the webhook accepted (2xx).", &s.sent),
            ("augur_webhook_failed_attempts_total", "Webhook POSTs that failed (retried).", &s.failed_attempts),
            ("augur_webhook_alerts_lost_total", "Alerts given up or dropped from a full queue.", &s.lost),
        ] {
            exposition::header(out, name, "counter", help);
            exposition::sample(out, name, &[], value.load(Ordering::Relaxed));
        }
    }
}

/// Sends queued alerts one by one, each retried with backoff.
async fn deliver(
    target: Target,
    timeout: Duration,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    stats: Arc<WebhookStats>,
) {
    loop {
        let next = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            let next = q.alerts.pop_front();
            q.busy = next.is_some();
            next
        };
        let Some(alert) = next else {
            wake.notified().await;
            continue;
        };
        let mut backoff = FIRST_BACKOFF;
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            match tokio::time::timeout(timeout, post(&target, alert.clone())).await {
                Ok(Ok(())) => {
                    delivered = true;
                    break;
                }
                Ok(Err(error)) => {
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    warn!(%error, attempt, "A webhook POST failed; retrying.");
                }
                Err(_) => {
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    warn!(?timeout, attempt, "A webhook POST timed out; retrying.");
                }
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        let counter = if delivered { &stats.sent } else { &stats.lost };
        counter.fetch_add(1, Ordering::Relaxed);
        queue.lock().unwrap_or_else(PoisonError::into_inner).busy = false;
    }
}

/// One POST on a fresh connection; `Ok` on a 2xx answer.
async fn post(target: &Target, body: Bytes) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(&target.authority)
        .await
        .with_context(|| format!("connecting to {}", target.authority))?;
    let (mut request, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let req = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let response = request.send_request(req).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if !status.is_success() {
        bail!("the webhook answered {status}");
    }
    Ok(())
}
