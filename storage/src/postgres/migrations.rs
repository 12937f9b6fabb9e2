//! The hot tier's tables: versioned migrations applied to every shard on start, and the day
//! partitions of `rollups`, created as rows arrive and dropped past `hot-retention`.
//!
//! Tables (docs/postgres.md describes every column):
//! - `augur_migrations`: which migrations ran, when.
//! - `series`: one row per series written to this shard: id (the u64 series id stored as the
//!   `bigint` of the same bits), canonical key, measurement, region, tags as `jsonb`.
//! - `rollups`: one row per (series, resolution, window start, field, kind), range-partitioned by
//!   day on `window_start`. Its primary key is that natural key (a field that changes type inside
//!   a window has a row per kind), which the upserts and every query use; `series` has the two
//!   indexes the query API's filters need. No other index: each costs ingest.

use tokio_postgres::Client;

use crate::parquet::layout::{date, parse_date};

/// Nanoseconds in a day.
const DAY: i64 = 86_400 * 1_000_000_000;

/// (version, name, SQL). Append only: a migration that ran is never edited.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "series and rollups",
        "CREATE TABLE series (
         id bigint PRIMARY KEY,
         series_key text NOT NULL,
         measurement text NOT NULL,
         region text NOT NULL,
         tags jsonb NOT NULL
     );
     CREATE INDEX series_by_measurement_region ON series (measurement, region);
     CREATE INDEX series_by_tags ON series USING gin (tags jsonb_path_ops);
     CREATE TABLE rollups (
         series_id bigint NOT NULL,
         field text NOT NULL,
         resolution text NOT NULL,
         window_start timestamptz NOT NULL,
         window_end timestamptz NOT NULL,
         kind text NOT NULL,
         count bigint NOT NULL,
         sum double precision,
         min double precision,
         max double precision,
         mean double precision,
         stddev double precision,
         first double precision,
         last double precision,
         int_sum numeric,
         int_min numeric,
         int_max numeric,
         int_first numeric,
         int_last numeric,
         first_time timestamptz NOT NULL,
         last_time timestamptz NOT NULL,
         true_count bigint,
         false_count bigint,
         last_string text,
         p50 double precision,
         p90 double precision,
         p95 double precision,
         p99 double precision,
         sketch bytea,
         partial boolean NOT NULL,
         PRIMARY KEY (series_id, resolution, window_start, field, kind)
     ) PARTITION BY RANGE (window_start);",
    ),
    (
        2,
        "predictions",
        "CREATE TABLE predictions (
         kind text NOT NULL,
         event_id bigint NOT NULL,
         series_id bigint NOT NULL,
         series_key text NOT NULL,
         measurement text NOT NULL,
         region text NOT NULL,
         entity text,
         field text NOT NULL,
         start_time timestamptz NOT NULL,
         end_time timestamptz,
         peak_time timestamptz NOT NULL,
         peak_score double precision NOT NULL,
         peak_value double precision NOT NULL,
         state text NOT NULL,
         PRIMARY KEY (kind, event_id)
     );
     CREATE INDEX predictions_by_region_start ON predictions (region, start_time);
     CREATE INDEX predictions_by_entity_start ON predictions (entity, start_time);",
    ),
    (3, "exhaustion forecasts", "ALTER TABLE predictions ADD COLUMN forecast_time timestamptz;"),
    (4, "prediction change times", "ALTER TABLE predictions ADD COLUMN updated_time timestamptz;"),
];

/// Applies every migration `client`'s database has not run yet, each in its own transaction,
/// under an advisory lock so two processes starting at once do not race. Returns how many ran.
///
/// # Errors
/// When the database refuses.
pub async fn migrate(client: &mut Client) -> Result<usize, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS augur_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let mut applied = 0;
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        // Any constant works as the lock key; this one is "augur" in ASCII.
        tx.execute("SELECT pg_advisory_xact_lock(418581362034)", &[]).await?;
        let done = tx.query_opt("SELECT 1 FROM augur_migrations WHERE version = $1", &[&version]).await?.is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO augur_migrations (version, name) VALUES ($1, $2)", &[&version, &name]).await?;
            applied += 1;
        }
        tx.commit().await?;
    }
    Ok(applied)
}

/// The start (ns) of the UTC day holding `nanos`.
pub fn day_start(nanos: i64) -> i64 {
    nanos.div_euclid(DAY) * DAY
}

/// Creates the partition of `rollups` for the day starting at `day` (ns) if it is missing.
///
/// # Errors
/// When the database refuses.
pub async fn create_day_partition(client: &Client, day: i64) -> Result<(), tokio_postgres::Error> {
    let (from, to) = (date(day), date(day + DAY));
    // Names and bounds come from our own date formatting, never from data.
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF rollups FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')",
            partition_name(day)
        ))
        .await
}

/// Drops the day partitions of `rollups` that ended at or before `cutoff` (ns). Returns their
/// names.
///
/// # Errors
/// When the database refuses.
pub async fn drop_days_before(client: &Client, cutoff: i64) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            // Day tables beside `rollups`, attached or not: a crash between detaching and
            // dropping leaves one detached, and the next pass drops it.
            "SELECT c.relname, i.inhrelid IS NOT NULL FROM pg_class c
             LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'rollups'::regclass
             WHERE c.relkind = 'r' AND c.relname ~ '^rollups_[0-9]{8}$'
               AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'rollups'::regclass)",
            &[],
        )
        .await?;
    let mut dropped = Vec::new();
    for row in rows {
        let (name, attached): (String, bool) = (row.get(0), row.get(1));
        let Some(day) = day_of_partition(&name) else { continue };
        if day + DAY <= cutoff {
            if attached {
                // Detached first, concurrently: dropping a partition outright would lock the
                // whole `rollups` table, queries included, for as long as the drop waits.
                client.batch_execute(&format!("ALTER TABLE rollups DETACH PARTITION {name} CONCURRENTLY")).await?;
            }
            client.batch_execute(&format!("DROP TABLE IF EXISTS {name}")).await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

fn partition_name(day: i64) -> String {
    format!("rollups_{}", date(day).replace('-', ""))
}

fn day_of_partition(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("rollups_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_date(&format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_to_their_day() {
        let day = day_start(1_795_000_000_000_000_000);
        assert_eq!(day_of_partition(&partition_name(day)), Some(day));
        assert_eq!(day_of_partition("rollups_default"), None);
        assert_eq!(day_of_partition("rollups_2026112"), None);
    }
}
