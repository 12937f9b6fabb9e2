//! Errors of the storage tier.

use std::path::PathBuf;

/// What went wrong while storing.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file system refused (full disk, permissions); retryable once fixed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Parquet refused the data.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow refused the data.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A batch does not have the columns its kind requires (a bug upstream).
    #[error("unexpected batch schema: {0}")]
    Schema(String),
    /// A setting cannot work.
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Whether retrying later may succeed (the disk may free up); schema errors never will.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// `Result` with [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
