"""Interop: the Parquet tree `augur serve` writes, read by DuckDB, Polars and pyarrow.

Run by scripts/test.sh in the venv it creates:
    python tests/interop/parquet_readers.py target/debug/augur

Sends known points over HTTP (three regions, one of them hostile to paths, two UTC days),
stops the server with SIGTERM (which flushes every buffer), then checks with each reader that
counts and sums match what was sent, that partition values decode back, and that a region/date
filter prunes files.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds

REGIONS = ["eu-west-1", "us-east-1", "ap/../south"]
DAYS = [1704067200, 1704153600]  # 2024-01-01 and 2024-01-02, 00:00 UTC
HOSTS = 20
POINTS_PER_HOST_PER_DAY = 30


def line_protocol_escape(value):
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def lines():
    """Every point sent, and the expected totals."""
    out, total_v, total_n = [], 0.0, 0
    for r, region in enumerate(REGIONS):
        for day in DAYS:
            for h in range(HOSTS):
                for k in range(POINTS_PER_HOST_PER_DAY):
                    v = r * 1000 + h + k / 10
                    n = r * 100 + h * 3 + k
                    t = (day + 3600 + k * 10) * 1_000_000_000
                    out.append((t, f"cpu,host=h{h},region={line_protocol_escape(region)} v={v!r},n={n}i {t}"))
                    total_v += v
                    total_n += n
    # In time order, as a fleet sends them: nothing is behind the watermark, so every point is
    # also in the rollups.
    return [line for _, line in sorted(out)], total_v, total_n


def main(binary):
    data_dir = Path(tempfile.mkdtemp(prefix="augur-interop-"))
    server = subprocess.Popen(
        [binary, "serve", "--data-dir", str(data_dir), "--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
        # Loopback, and this script is the only client: no tokens needed.
        env={**os.environ, "AUGUR_AUTH__ENABLED": "false"},
    )
    try:
        listening = server.stdout.readline().split()
        http = next(w.split("=", 1)[1] for w in listening if w.startswith("http="))
        points, total_v, total_n = lines()
        for start in range(0, len(points), 1000):
            body = "\n".join(points[start : start + 1000]).encode()
            request = urllib.request.Request(f"http://{http}/api/v2/write", data=body, method="POST")
            with urllib.request.urlopen(request) as reply:
                assert reply.status == 204, reply.status
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, "augur did not exit cleanly"
    finally:
        if server.poll() is None:
            server.kill()

    root = data_dir / "parquet"
    raw = f"{root}/raw/cpu/*/*/*/*.parquet"
    count = len(points)

    # DuckDB: the query the docs show, over the whole tree.
    row = duckdb.sql(
        f"SELECT count(*), sum(v), sum(n) FROM read_parquet('{raw}', hive_partitioning = true, union_by_name = true)"
    ).fetchall()[0]
    assert row[0] == count and abs(row[1] - total_v) < 1e-6 * total_v and row[2] == total_n, (row, count, total_v, total_n)
    regions = {r for (r,) in duckdb.sql(f"SELECT DISTINCT region FROM read_parquet('{raw}', hive_partitioning = true)").fetchall()}
    assert regions == set(REGIONS), regions
    per_day = duckdb.sql(
        f"SELECT date, count(*) FROM read_parquet('{raw}', hive_partitioning = true) WHERE region = 'eu-west-1' GROUP BY date ORDER BY date"
    ).fetchall()
    assert [c for _, c in per_day] == [HOSTS * POINTS_PER_HOST_PER_DAY] * 2, per_day
    # Date functions work on the time column as written (the demo's query shape).
    hours = duckdb.sql(
        f"SELECT region, date_trunc('hour', time) AS hour, max(v) FROM read_parquet('{raw}', hive_partitioning = true, "
        "union_by_name = true) GROUP BY ALL"
    ).fetchall()
    assert len(hours) == len(REGIONS) * len(DAYS), hours
    rollups = duckdb.sql(
        f"SELECT sum(count) FROM read_parquet('{root}/rollups/*/*/*/*.parquet', hive_partitioning = true, union_by_name = true) "
        "WHERE resolution = '1m' AND field = 'v'"
    ).fetchall()[0]
    assert rollups[0] == count, rollups

    # Polars: lazy scan with Hive partitions.
    frame = (
        pl.scan_parquet(f"{root}/raw/cpu/**/*.parquet", hive_partitioning=True, missing_columns="insert")
        .select(pl.len().alias("rows"), pl.col("v").sum(), pl.col("n").sum(), pl.col("region").n_unique().alias("regions"))
        .collect()
    )
    assert frame["rows"][0] == count and frame["n"][0] == total_n and frame["regions"][0] == len(REGIONS), frame
    assert abs(frame["v"][0] - total_v) < 1e-6 * total_v, frame

    # pyarrow: a dataset; a region and date filter must prune to that folder's files.
    dataset = ds.dataset(f"{root}/raw/cpu", format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["n"])
    assert table.num_rows == count and sum(table.column("n").to_pylist()) == total_n
    wanted = (ds.field("region") == "ap/../south") & (ds.field("date") == "2024-01-02")
    fragments = list(dataset.get_fragments(filter=wanted))
    all_fragments = list(dataset.get_fragments())
    assert fragments and len(fragments) < len(all_fragments), (len(fragments), len(all_fragments))
    assert all("region=ap%2F..%2Fsouth/date=2024-01-02/" in f.path for f in fragments), [f.path for f in fragments]
    filtered = dataset.to_table(filter=wanted, columns=["n"])
    assert filtered.num_rows == HOSTS * POINTS_PER_HOST_PER_DAY, filtered.num_rows

    print(json.dumps({"points": count, "files": len(all_fragments), "pruned_to": len(fragments), "readers": ["duckdb", "polars", "pyarrow"]}))


if __name__ == "__main__":
    main(sys.argv[1])
