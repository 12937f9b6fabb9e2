//! `augur partitions`: reads `GET /api/v1/partitions` from a running server and prints it as a
//! table, so ops can see load, queues and skew without a dashboard.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::PartitionsReport;

/// GETs `path` from the server at `base` (`http://HOST:PORT`), with `token` when given.
///
/// # Errors
/// When the server cannot be reached or answers anything but 200 (its message is included).
pub async fn get(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<bytes::Bytes> {
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("--url {base}: expected http://HOST:PORT"))?
        .trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting to {base}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake")?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, authority);
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Token {token}"));
    }
    let response = sender.send_request(request.body(Empty::<bytes::Bytes>::new())?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{base}{path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// The report as a table: one row per partition, then the skew.
pub fn table(report: &PartitionsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>9} {:>12} {:>14} {:>12} {:>12} {:>13} {:>12} {:>10}",
        "partition", "points/s", "points", "queue pts", "queue bytes", "active series", "late points", "emit lag"
    );
    for p in &report.partitions {
        let lag = p.emit_lag_seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
        let _ = writeln!(
            out,
            "{:>9} {:>12.0} {:>14} {:>12} {:>12} {:>13} {:>12} {:>10}",
            p.partition,
            p.points_per_second,
            p.points_total,
            p.queue_points,
            p.queue_bytes,
            p.active_series,
            p.late_points_total,
            lag
        );
    }
    let skew = report.skew.map_or_else(|| "- (idle)".to_owned(), |s| format!("{s:.2}"));
    let _ = writeln!(out, "skew (max/mean points/s over {:.0}s): {skew}", report.window_seconds);
    out
}

/// `augur partitions --url URL [--token T]`.
///
/// # Errors
/// When the server cannot be read.
pub async fn run(url: &str, token: Option<&str>) -> anyhow::Result<String> {
    let body = get(url, "/api/v1/partitions", token).await?;
    let report: PartitionsReport = serde_json::from_slice(&body).context("reading /api/v1/partitions")?;
    Ok(table(&report))
}
