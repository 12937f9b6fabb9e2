//! `[parquet]`: how the Parquet sink buffers and encodes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[parquet]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParquetConfig {
    /// Write Parquet at all (off: outputs are computed and dropped).
    pub enabled: bool,
    /// A folder's buffer is written as a file once it holds this many rows.
    pub file_rows: usize,
    /// Rows per row group inside a file, at most.
    pub row_group_rows: usize,
    /// Bytes per row group, at most.
    pub row_group_bytes: usize,
    /// A buffer older than this is written even if small.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Memory all buffers may hold together; past it the largest are written first. 128 MiB by
    /// default: under a steady load the buffers sit at this bound, so it is resident memory, and
    /// 256 MiB measured 0.1–0.2 GiB more peak RSS in every side-by-side pair of runs
    /// (docs/performance.md); smaller files are merged by compaction.
    pub max_buffer_bytes: usize,
    /// ZSTD level (1–22).
    pub zstd_level: i32,
    /// How often the server looks for closed folders to compact.
    #[serde(with = "humantime_serde")]
    pub compact_every: Duration,
    /// A folder is compacted once its hour (raw) or day (rollups) ended this long ago.
    #[serde(with = "humantime_serde")]
    pub compact_after: Duration,
    /// Raw hours older than this are deleted, a whole `hour=` folder at a time; unset keeps them.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub raw_retention: Option<Duration>,
    /// Rollup days older than this are deleted, a whole `date=` folder at a time; unset keeps them.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub rollup_retention: Option<Duration>,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file_rows: 1 << 20,
            row_group_rows: 1 << 20,
            row_group_bytes: 128 << 20,
            max_age: Duration::from_secs(60),
            max_buffer_bytes: 128 << 20,
            zstd_level: 3,
            compact_every: Duration::from_secs(300),
            compact_after: Duration::from_secs(900),
            raw_retention: None,
            rollup_retention: None,
        }
    }
}

impl ParquetConfig {
    /// Every problem with these settings, each prefixed with its key.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.file_rows == 0 || self.row_group_rows == 0 {
            problems.push("parquet.file-rows and parquet.row-group-rows must be at least 1".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            problems.push(format!("parquet.zstd-level = {} must be between 1 and 22", self.zstd_level));
        }
        if self.compact_every.is_zero() {
            problems.push("parquet.compact-every must be above 0".into());
        }
        if self.max_age.is_zero() {
            problems.push("parquet.max-age must be above 0".into());
        }
        if self.max_buffer_bytes < 1 << 20 {
            problems
                .push(format!("parquet.max-buffer-bytes = {} is under the minimum of 1 MiB", self.max_buffer_bytes));
        }
        problems
    }
}
