//! Reading request bodies within limits: size (before and after decompression), time, and the
//! server-wide budget of body bytes in memory.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

/// Why a body could not be read; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("request body is larger than the limit of {limit} bytes{after}")]
    TooLarge { limit: u64, after: &'static str },
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    #[error("the server holds its limit of request bodies in memory; retry shortly")]
    Busy,
    #[error("invalid gzip body: {0}")]
    BadGzip(std::io::Error),
    #[error("error reading the request body: {0}")]
    Read(String),
}

/// Bytes of body held, charged against the server-wide budget until dropped.
#[derive(Debug)]
pub(super) struct Charge {
    budget: Arc<Semaphore>,
    kib: u32,
}

impl Charge {
    pub(super) fn new(budget: Arc<Semaphore>) -> Self {
        Self { budget, kib: 0 }
    }

    /// Grows the charge to cover `bytes` more than already charged for by earlier calls.
    fn cover(&mut self, total_bytes: usize) -> Result<(), BodyError> {
        let needed = u32::try_from(total_bytes.div_ceil(1024)).map_err(|_| BodyError::Busy)?;
        if needed > self.kib {
            let permit = self.budget.try_acquire_many(needed - self.kib).map_err(|_| BodyError::Busy)?;
            permit.forget(); // returned in `drop`
            self.kib = needed;
        }
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.add_permits(self.kib as usize);
    }
}

/// Reads the whole body, refusing more than `limit` bytes or taking longer than `timeout`.
pub(super) async fn read(
    body: axum::body::Body,
    limit: u64,
    timeout: Duration,
    charge: &mut Charge,
) -> Result<Bytes, BodyError> {
    let collect = async {
        let mut body = body;
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            }; // trailers
            if (buf.len() + data.len()) as u64 > limit {
                return Err(BodyError::TooLarge { limit, after: "" });
            }
            charge.cover(buf.len() + data.len())?;
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, collect).await.map_err(|_| BodyError::Timeout(timeout))?
}

/// Decompresses a gzip body, refusing output over `limit` bytes and charging the output buffer's
/// capacity as it grows, so a gzip bomb stops at the limit instead of filling memory. Blocking: run
/// it on the ingest pool.
pub(super) fn gunzip(compressed: &[u8], limit: u64, charge: &mut Charge) -> Result<Vec<u8>, BodyError> {
    const STEP: usize = 256 << 10;
    let most = usize::try_from(limit).unwrap_or(usize::MAX).saturating_add(STEP);
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut out = Vec::new();
    loop {
        let len = out.len();
        if out.capacity() < len + STEP {
            // Grow by doubling, as `Vec` would, but never past the limit plus one step, and
            // charge the exact capacity before allocating it.
            let capacity = (out.capacity() * 2).max(len + STEP).min(most);
            charge.cover(compressed.len() + capacity)?;
            out.reserve_exact(capacity - len);
        }
        out.resize(len + STEP, 0);
        let n = decoder.read(&mut out[len..]).map_err(BodyError::BadGzip)?;
        out.truncate(len + n);
        if n == 0 {
            return Ok(out);
        }
        if out.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit, after: " after decompression" });
        }
    }
}
