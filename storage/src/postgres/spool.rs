//! A shard's spool: rollup batches kept on disk, in order, while the shard cannot take them.
//!
//! One Arrow IPC file per batch, `<folder>/<sequence>.arrow` (20 digits, so names sort in
//! order), each written durably (temporary name, fsync, rename, fsync of the folder). Bounded by
//! bytes: [`Spool::has_room`] says when the writer must stop taking batches, which makes the
//! pipelines wait and ingest answer 503.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;

use crate::durable::{sync_dir, write_atomic, TEMP_PREFIX};
use crate::error::{Result, StorageError};

/// Batches waiting for one shard, oldest first.
#[derive(Debug)]
pub struct Spool {
    folder: PathBuf,
    /// (sequence number, bytes) of each file, oldest first.
    files: VecDeque<(u64, u64)>,
    bytes: u64,
    max_bytes: u64,
    next: u64,
}

impl Spool {
    /// Opens (creating) the spool in `folder`, finding the batches a previous run left and
    /// removing temporary files a crash left.
    ///
    /// # Errors
    /// When the folder cannot be created or listed.
    pub fn open(folder: &Path, max_bytes: u64) -> Result<Self> {
        let io = |what, source| StorageError::Io { what, path: folder.to_owned(), source };
        fs::create_dir_all(folder).map_err(|e| io("creating", e))?;
        let mut files = Vec::new();
        for entry in fs::read_dir(folder).map_err(|e| io("listing", e))? {
            let entry = entry.map_err(|e| io("listing", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path()).map_err(|e| io("removing a temporary file in", e))?;
            } else if let Some(sequence) = name.strip_suffix(".arrow").and_then(|s| s.parse::<u64>().ok()) {
                files.push((sequence, entry.metadata().map_err(|e| io("reading", e))?.len()));
            }
        }
        files.sort_unstable();
        let next = files.last().map_or(0, |&(sequence, _)| sequence + 1);
        let bytes = files.iter().map(|&(_, size)| size).sum();
        Ok(Self { folder: folder.to_owned(), files: files.into(), bytes, max_bytes, next })
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no batch waits.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether another batch may be added.
    pub fn has_room(&self) -> bool {
        self.bytes < self.max_bytes
    }

    /// Appends `batch`, durably.
    ///
    /// # Errors
    /// When it cannot be encoded or written (full disk); the spool is unchanged then.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut bytes = Vec::new();
        let mut writer = FileWriter::try_new(&mut bytes, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
        drop(writer);
        write_atomic(&self.folder, &self.folder, &file_name(self.next), &bytes)?;
        self.files.push_back((self.next, bytes.len() as u64));
        self.bytes += bytes.len() as u64;
        self.next += 1;
        Ok(())
    }

    /// The oldest batch, if any.
    ///
    /// # Errors
    /// When its file cannot be read or decoded.
    pub fn front(&self) -> Result<Option<RecordBatch>> {
        let Some(&(sequence, _)) = self.files.front() else { return Ok(None) };
        let path = self.folder.join(file_name(sequence));
        let file = File::open(&path).map_err(|source| StorageError::Io { what: "opening", path, source })?;
        let reader = FileReader::try_new(file, None)?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some(arrow_select::concat::concat_batches(&schema, &batches)?))
    }

    /// Removes the oldest batch (once the shard has it), durably.
    ///
    /// # Errors
    /// When the file cannot be removed.
    pub fn pop_front(&mut self) -> Result<()> {
        let Some(&(sequence, size)) = self.files.front() else { return Ok(()) };
        let path = self.folder.join(file_name(sequence));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(StorageError::Io { what: "removing", path, source }),
        }
        sync_dir(&self.folder)?;
        self.files.pop_front();
        self.bytes -= size;
        Ok(())
    }
}

impl Spool {
    /// Takes the oldest batch out of the queue without deleting it: its file is renamed
    /// `<name>.unreadable` for an operator to look at.
    ///
    /// # Errors
    /// When the file cannot be renamed.
    pub fn set_aside_front(&mut self) -> Result<PathBuf> {
        let Some(&(sequence, size)) = self.files.front() else { return Ok(self.folder.clone()) };
        let path = self.folder.join(file_name(sequence));
        // The time in the name keeps a later file of the same sequence from overwriting it.
        let aside = path.with_extension(format!("arrow.{}.unreadable", crate::now_nanos()));
        fs::rename(&path, &aside).map_err(|source| StorageError::Io { what: "renaming", path, source })?;
        sync_dir(&self.folder)?;
        self.files.pop_front();
        self.bytes -= size;
        Ok(aside)
    }
}

fn file_name(sequence: u64) -> String {
    format!("{sequence:020}.arrow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_reopening_and_the_bound_holds() {
        let folder = std::env::temp_dir().join(format!("augur-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&folder);
        let schema = crate::schema::rollup_schema();
        let batch = RecordBatch::new_empty(schema.clone());
        let mut spool = Spool::open(&folder, 1 << 20).unwrap();
        for _ in 0..3 {
            spool.push(&batch).unwrap();
        }
        fs::write(folder.join(format!("{TEMP_PREFIX}torn")), b"half a file").unwrap();
        let bytes = spool.bytes();
        let mut spool = Spool::open(&folder, bytes).unwrap();
        assert_eq!((spool.len(), spool.bytes()), (3, bytes));
        assert!(!spool.has_room(), "at the bound");
        spool.pop_front().unwrap();
        assert!(spool.has_room());
        spool.push(&batch).unwrap();
        let names: Vec<_> = fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "the temporary file is gone: {names:?}");
        assert_eq!(spool.front().unwrap().unwrap().schema(), schema);
        fs::remove_dir_all(&folder).unwrap();
    }
}
