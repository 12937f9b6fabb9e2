//! Durable files: written under a temporary name, fsynced, renamed into place, and the directories
//! fsynced, so a crash leaves the whole file or none of it (plus a temporary file that startup
//! removes). Parquet files, spool batches and the shard map are all written this way.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StorageError;

/// Prefix of files being written; startup removes any left by a crash.
pub const TEMP_PREFIX: &str = ".tmp-";
/// Environment variable for crash tests: `parquet-before-rename` aborts the process after a
/// temporary Parquet file is written and synced, before it is renamed into place;
/// `checkpoint-partition-written` aborts it in the middle of a checkpoint (from the second on),
/// once one partition's state file is written and before the checkpoint is recorded.
pub const FAULT_ENV: &str = "AUGUR_FAULT";

/// Writes `bytes` as `<folder>/<name>` atomically and durably; returns the path. Every directory
/// from `folder` up to `root`'s parent is synced, so a new folder's entry is durable too.
///
/// # Errors
/// When the file system refuses (full disk, permissions).
pub fn write_atomic(root: &Path, folder: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, StorageError> {
    let path = folder.join(name);
    // Unique per write, so two writers of identical bytes never share (and truncate) a temp file.
    let serial = TEMP_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temp = folder.join(format!("{TEMP_PREFIX}{}-{serial}-{name}", std::process::id()));
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StorageError::Io { what, path, source }
    };
    fs::create_dir_all(folder).map_err(io("creating", folder))?;
    let mut file = File::create_new(&temp).map_err(io("creating", &temp))?;
    let written = file
        .write_all(bytes)
        .map_err(io("writing", &temp))
        .and_then(|()| file.sync_all().map_err(io("syncing", &temp)));
    drop(file);
    if let Err(error) = written {
        // A full disk must not also fill up with the temporary files of every retry.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    if name.ends_with(".parquet") && std::env::var(FAULT_ENV).is_ok_and(|v| v == "parquet-before-rename") {
        std::process::abort(); // crash-test fault injection: see FAULT_ENV
    }
    if let Err(error) = fs::rename(&temp, &path) {
        let _ = fs::remove_file(&temp);
        return Err(io("renaming", &temp)(error));
    }
    // The folder records the file; each ancestor up to the root records its child directory, which
    // may be new (created here or by a concurrent writer that has not synced yet). Files are
    // written seldom (per folder, at most every `max-age`), so syncing every level is cheap.
    for dir in folder.ancestors().take_while(|d| d.starts_with(root)) {
        sync_dir(dir)?;
    }
    if let Some(parent) = root.parent() {
        sync_dir(parent)?;
    }
    Ok(path)
}

/// Numbers temporary files, with the process id, so they are unique.
static TEMP_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| StorageError::Io {
        what: "syncing",
        path: dir.to_owned(),
        source,
    })
}
