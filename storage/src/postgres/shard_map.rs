//! Which shard holds a rollup row: rendezvous hashing over the shards of an **epoch**.
//!
//! The map is a list of epochs, each a set of shard names and the window start from which it
//! applies. A row (series, field, resolution, window start) goes to the epoch in force at its
//! window start, and inside it to the shard with the highest XXH3 score for its series id
//! (rendezvous, or highest-random-weight, hashing). Consequences:
//! - a row's shard depends only on its key, so a replay writes it where it was written before and
//!   one window's row is never split across shards;
//! - adding shards starts a new epoch at the current time: rows already written stay where they
//!   are (queries read every shard) and no data moves;
//! - inside an epoch a series' rows all live on one shard;
//! - a region pinned to some shards (`[postgres.region-shards]`, for locality) has its rows placed
//!   among those shards only; changing the pins starts a new epoch too.
//!
//! The map is kept in `<data-dir>/shard-map.json`, written durably whenever it changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::durable::write_atomic;
use crate::error::{Result, StorageError};

/// The file name of the map inside the data dir.
pub const FILE_NAME: &str = "shard-map.json";

/// Shard epochs, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    epochs: Vec<Epoch>,
    #[serde(skip)]
    placement: Vec<Placement>,
}

/// An epoch's shards as the hash uses them: (index into the configured list, rendezvous seed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Placement {
    all: Vec<(usize, u64)>,
    pinned: BTreeMap<String, Vec<(usize, u64)>>,
}

/// The shards in force from a time on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// 1 for the first map, then one more for each change.
    pub number: u32,
    /// Rows whose window starts at or after this (ns since the epoch) belong to this epoch.
    pub starts_at: i64,
    /// Shard names.
    pub shards: Vec<String>,
    /// Regions placed on some of the shards only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region_shards: BTreeMap<String, Vec<String>>,
}

impl Epoch {
    /// Whether `other` places rows the same way (same shard set, same pins; order is irrelevant).
    fn same_placement(&self, shards: &[String], pins: &BTreeMap<String, Vec<String>>) -> bool {
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list
        };
        sorted(&self.shards) == sorted(shards)
            && self.region_shards.len() == pins.len()
            && pins
                .iter()
                .all(|(region, names)| self.region_shards.get(region).is_some_and(|own| sorted(own) == sorted(names)))
    }
}

impl ShardMap {
    /// Loads the map from `data_dir`, starting a new epoch when `configured` (shard names in
    /// config order) or the region pins differ from the newest one, and saves it. `now` (ns) is
    /// when a new epoch starts.
    ///
    /// # Errors
    /// When the file cannot be read or written, or a shard of an earlier epoch is no longer
    /// configured (its rows would become unreachable).
    pub fn open(
        data_dir: &Path,
        configured: &[String],
        pins: &BTreeMap<String, Vec<String>>,
        now: i64,
    ) -> Result<Self> {
        let path = data_dir.join(FILE_NAME);
        let mut epochs: Vec<Epoch> = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<ShardMap>(&bytes)
                    .map_err(|e| StorageError::Config(format!("{} is not a shard map: {e}", path.display())))?
                    .epochs
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(StorageError::Io { what: "reading", path, source }),
        };
        for epoch in &epochs {
            if let Some(gone) = epoch.shards.iter().find(|name| !configured.contains(name)) {
                return Err(StorageError::Config(format!(
                    "shard {gone:?} holds rows of shard-map epoch {} ({}) but is not in [[postgres.shards]]; \
                     keep it listed so its rows stay readable",
                    epoch.number,
                    path.display()
                )));
            }
        }
        if epochs.last().is_none_or(|last| !last.same_placement(configured, pins)) {
            let number = epochs.last().map_or(1, |last| last.number + 1);
            let starts_at = epochs.last().map_or(i64::MIN, |last| now.max(last.starts_at + 1));
            epochs.push(Epoch { number, starts_at, shards: configured.to_vec(), region_shards: pins.clone() });
            let map = Self { epochs: epochs.clone(), placement: Vec::new() };
            let json = serde_json::to_vec_pretty(&map).map_err(|e| StorageError::Config(e.to_string()))?;
            write_atomic(data_dir, data_dir, FILE_NAME, &json)?;
        }
        Ok(Self::with_placement(epochs, configured))
    }

    fn with_placement(epochs: Vec<Epoch>, configured: &[String]) -> Self {
        let seeds = |names: &[String]| -> Vec<(usize, u64)> {
            names
                .iter()
                .filter_map(|name| Some((configured.iter().position(|c| c == name)?, xxh3_64(name.as_bytes()))))
                .collect()
        };
        let placement = epochs
            .iter()
            .map(|epoch| Placement {
                all: seeds(&epoch.shards),
                pinned: epoch.region_shards.iter().map(|(region, names)| (region.clone(), seeds(names))).collect(),
            })
            .collect();
        Self { epochs, placement }
    }

    /// The epochs, oldest first.
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The index (in the configured shard list) of the shard holding the row of `series_id` (in
    /// `region`) for the window starting at `window_start` (ns).
    pub fn shard_of(&self, series_id: u64, region: &str, window_start: i64) -> usize {
        let epoch = self.epochs.partition_point(|e| e.starts_at <= window_start).saturating_sub(1);
        let placement = &self.placement[epoch];
        let candidates = placement.pinned.get(region).unwrap_or(&placement.all);
        let key = series_id.to_le_bytes();
        let mut best = (0, 0);
        for &(index, seed) in candidates {
            let score = xxh3_64_with_seed(&key, seed);
            if score >= best.1 {
                best = (index, score);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn temp_dir(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("augur-shard-map-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn adding_a_shard_moves_no_earlier_row_and_a_fair_share_of_later_ones() {
        let dir = temp_dir("grow");
        let no_pins = BTreeMap::new();
        let two = ShardMap::open(&dir, &names(&["a", "b"]), &no_pins, 1_000).unwrap();
        assert_eq!(two.epochs().len(), 1);
        let three = ShardMap::open(&dir, &names(&["a", "b", "c"]), &no_pins, 5_000).unwrap();
        assert_eq!(three.epochs().len(), 2);
        assert_eq!(three.epochs()[1].starts_at, 5_000);
        let mut on_new = 0;
        for series in 0..30_000u64 {
            let id = xxh3_64(&series.to_le_bytes());
            assert_eq!(three.shard_of(id, "r", 4_999), two.shard_of(id, "r", 4_999), "rows before the new epoch stay");
            let (before, after) = (two.shard_of(id, "r", 5_000), three.shard_of(id, "r", 5_000));
            if after == 2 {
                on_new += 1;
            } else {
                assert_eq!(before, after, "rendezvous: a row moves only to the new shard");
            }
        }
        assert!((9_000..11_000).contains(&on_new), "about a third goes to the new shard: {on_new}");
        // Reopening with the same shards, in another order, changes nothing.
        let again = ShardMap::open(&dir, &names(&["c", "a", "b"]), &no_pins, 9_000).unwrap();
        assert_eq!(again.epochs(), three.epochs());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropping_a_shard_that_holds_rows_is_refused() {
        let dir = temp_dir("drop");
        ShardMap::open(&dir, &names(&["a", "b"]), &BTreeMap::new(), 1).unwrap();
        let error = ShardMap::open(&dir, &names(&["a"]), &BTreeMap::new(), 2).unwrap_err().to_string();
        assert!(error.contains("\"b\"") && error.contains("epoch 1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pinned_region_stays_on_its_shards_and_pinning_starts_an_epoch() {
        let dir = temp_dir("pins");
        let shards = names(&["a", "b", "c"]);
        let unpinned = ShardMap::open(&dir, &shards, &BTreeMap::new(), 1).unwrap();
        let pins = BTreeMap::from([("eu".to_owned(), names(&["b"])), ("us".to_owned(), names(&["a", "c"]))]);
        let pinned = ShardMap::open(&dir, &shards, &pins, 100).unwrap();
        assert_eq!(pinned.epochs().len(), 2);
        let mut used = [0; 3];
        for series in 0..3_000u64 {
            let id = xxh3_64(&series.to_le_bytes());
            assert_eq!(pinned.shard_of(id, "eu", 100), 1);
            assert_ne!(pinned.shard_of(id, "us", 100), 1);
            assert_eq!(pinned.shard_of(id, "eu", 99), unpinned.shard_of(id, "eu", 99), "earlier windows stay");
            used[pinned.shard_of(id, "asia", 100)] += 1;
        }
        assert!(used.iter().all(|&n| n > 800), "other regions use every shard: {used:?}");
        let again = ShardMap::open(&dir, &shards, &pins, 200).unwrap();
        assert_eq!(again.epochs().len(), 2, "same pins, no new epoch");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
