//! Memory per active (series, field) of a partition's state, counted by the allocator: the open
//! windows at the default resolutions, and the detectors and events of the predictor.
//!
//! `cargo bench -p augur-suite --bench window_memory`: feeds 10,000 TSBS hosts × 10 fields one
//! point per host every 10 s for 59 minutes of event time (both default resolutions open, the 1 h
//! windows holding 58 merged 1 m windows; every field scored), then prints the live heap bytes the
//! windows and the predictor hold, per (series, field). Not a timing: a count of bytes from a
//! counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use augur_engine::config::Config;
use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::predict::events::Predictor;
use augur_engine::rollup::RollupBuilder;
use augur_engine::window::Windows;
use augur_suite::Batcher;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const HOSTS: usize = 10_000;
const FIELDS: usize = 10;
const SECOND: i64 = 1_000_000_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --no-run` / test listing
    }
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(HOSTS, 4, FIELDS, 0));
    let mut body = Vec::new();
    let mut rollups = RollupBuilder::default();

    let pipeline = Config::default().pipeline();
    let before = LIVE.load(Ordering::SeqCst);
    let mut windows = Windows::new(pipeline.resolutions.clone());
    let windows_held = |before: isize| LIVE.load(Ordering::SeqCst) - before;
    let mut predictor_bytes = 0;
    let mut predictor = Predictor::new(pipeline.predict.clone());
    let start = 1_700_000_000 / 3600 * 3600 * SECOND; // an hour boundary
    for step in 0..(59 * 6) {
        let time = start + step * 10 * SECOND;
        fleet.batch(HOSTS, time, &mut body);
        let batch = batcher.batch(&body);
        // Counted apart: the predictor's growth is measured around its own calls.
        let at = LIVE.load(Ordering::SeqCst);
        batch.iter().for_each(|p| predictor.observe(&p));
        drop(predictor.finish().unwrap());
        predictor_bytes += LIVE.load(Ordering::SeqCst) - at;
        batch.iter().for_each(|p| windows.add(&p));
        drop(batch);
        // The watermark trails by the default 10 s lateness; closed windows are emitted and dropped.
        windows.close(time - 10 * SECOND, false, &mut rollups);
        drop(rollups.finish().unwrap());
    }
    let held = windows_held(before) - predictor_bytes;
    let pairs = (HOSTS * FIELDS) as f64;
    let resolutions: Vec<&str> = pipeline.resolutions.iter().map(|r| r.name.as_str()).collect();
    println!(
        "windows ({}): {} active series, {:.1} MiB live heap, {:.0} bytes per (series, field)",
        resolutions.join(", "),
        windows.active_series(),
        held as f64 / (1 << 20) as f64,
        held as f64 / pairs
    );
    println!(
        "predictor: {:.1} MiB live heap, {:.0} bytes per (series, field)",
        predictor_bytes as f64 / (1 << 20) as f64,
        predictor_bytes as f64 / pairs
    );
    println!("engine state: {:.0} bytes per (series, field)", (held + predictor_bytes) as f64 / pairs);
    drop(predictor);
}
