//! Augur's storage tier: where results leave the engine.
//!
//! It speaks Arrow and knows nothing of the ingest tier or the engine. Nothing is stored yet: the
//! Hive-partitioned Parquet sink (raw points, rollups, predictions) and the sharded PostgreSQL sink
//! (rollups, predictions) arrive with the cold- and hot-storage issues, and this map grows with
//! them.
//!
//! # Layout
//! (empty: no modules yet)
