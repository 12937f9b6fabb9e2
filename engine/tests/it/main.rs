//! Integration tests of the engine's window aggregation, driven tick by tick with a manual clock.

mod checkpoint;
mod harness;
mod nab;
mod parquet;
mod smd;
mod snapshot;
mod windows;
