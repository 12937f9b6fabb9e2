//! The Parquet sink: every raw point and every rollup, in a Hive-partitioned tree that DuckDB,
//! Polars, pyarrow and Spark read as it is.
//!
//! # Layout
//! - [`config`]: the `[parquet]` section.
//! - [`layout`]: folder paths and the escaping of values taken from data.
//! - [`mod@file`]: one file: sorted, encoded, named by its content, written atomically.
//! - [`sink`]: buffers per folder, the flush policy, retention, startup clean-up.
//! - [`compact`]: small files of a folder merged and swapped in atomically.

pub mod compact;
pub mod config;
pub mod file;
pub mod layout;
pub mod sink;

pub use crate::error::StorageError;
pub use config::ParquetConfig;
pub use sink::ParquetSink;
