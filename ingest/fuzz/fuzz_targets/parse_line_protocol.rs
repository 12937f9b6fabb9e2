//! Any bytes through the whole write-path parser: it must never panic, every error must point
//! inside the body, and every accepted point must survive a render and re-parse unchanged.
#![no_main]

use augur_ingest::line_protocol::{parse_points, render_points};
use augur_ingest::Precision;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let (points, errors) = parse_points(body, Precision::Nanoseconds, 0);
    let lines = body.split(|&b| b == b'\n').count();
    for error in &errors {
        assert!(error.line >= 1 && error.line <= lines, "{error}");
    }
    let mut text = Vec::new();
    render_points(&points, &mut text);
    let (again, errors) = parse_points(&text, Precision::Nanoseconds, 0);
    assert!(errors.is_empty(), "rendered points did not parse: {errors:?}");
    assert_eq!(again, points);
});
