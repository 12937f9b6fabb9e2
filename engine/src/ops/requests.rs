//! Request metrics: a latency histogram and a count by status class per endpoint, recorded by a
//! layer over every route. Endpoints are the route patterns (`/api/v1/rollups`), never raw paths,
//! so a client cannot grow the label set.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use augur_ingest::histogram::Histogram;
use augur_storage::exposition::{header, sample};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Per endpoint.
#[derive(Debug, Default)]
struct Endpoint {
    latency: Histogram,
    /// By status class: 2xx, 3xx, 4xx, 5xx.
    statuses: [AtomicU64; 4],
}

/// Every endpoint's request metrics.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    endpoints: Mutex<BTreeMap<String, Arc<Endpoint>>>,
}

impl RequestMetrics {
    fn endpoint(&self, name: &str) -> Arc<Endpoint> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(endpoint) = endpoints.get(name) {
            return endpoint.clone();
        }
        endpoints.entry(name.to_owned()).or_default().clone()
    }

    /// Appends `augur_http_request_duration_seconds` and `augur_http_requests_total`.
    pub fn render(&self, out: &mut String) {
        let endpoints = self.endpoints.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let name = "augur_http_request_duration_seconds";
        header(out, name, "histogram", "Time from a request's headers to its response, per endpoint.");
        for (endpoint, e) in &endpoints {
            crate::metrics::histogram(out, name, &[("endpoint", endpoint)], &e.latency.snapshot());
        }
        let name = "augur_http_requests_total";
        header(out, name, "counter", "Requests answered, per endpoint and status class.");
        for (endpoint, e) in &endpoints {
            for (class, count) in ["2xx", "3xx", "4xx", "5xx"].iter().zip(&e.statuses) {
                sample(out, name, &[("endpoint", endpoint), ("code", class)], count.load(Ordering::Relaxed));
            }
        }
    }
}

/// The layer's function: times the request and counts its status under its route pattern
/// (`other` for requests no route matched).
pub async fn record(State(metrics): State<Arc<RequestMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = request.extensions().get::<MatchedPath>().map_or("other", MatchedPath::as_str).to_owned();
    let response = next.run(request).await;
    let e = metrics.endpoint(&endpoint);
    e.latency.observe(started.elapsed());
    let class = (response.status().as_u16() / 100).clamp(2, 5) - 2;
    e.statuses[usize::from(class)].fetch_add(1, Ordering::Relaxed);
    response
}
