//! Failure prediction: streaming anomaly detection, scored on the Numenta Anomaly Benchmark.
//!
//! - [`detector`]: the per-(series, field) streaming detector.
//! - [`host`]: the per-host streaming scorer, one score from all of a host's fields.
//! - [`events`]: a partition's detectors and the events they raise.
//! - [`forecast`]: exhaustion forecasts of capacity fields (a robust trend to a limit).
//! - [`risk`]: per-host failure risk from the detectors' and forecasts' signals, decaying.
//! - [`webhook`]: alerts: events POSTed as JSON, retried with backoff.
//! - [`nab`]: NAB's scorer (windows, profiles, threshold sweep, normalisation).
//! - [`multivariate`]: `augur eval multivariate`: the per-host scorer over one CSV per host.
//! - [`smd`]: point-wise scores of a fleet's per-row scores against labels (SMD's protocol).
//! - [`eval`]: `augur eval nab`: runs the detector over a NAB data tree, writes NAB-layout
//!   results, and scores them.

pub mod detector;
pub mod eval;
pub mod events;
pub mod forecast;
pub mod host;
pub mod multivariate;
pub mod nab;
pub mod risk;
pub mod smd;
pub mod webhook;
