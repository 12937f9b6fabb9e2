"""The InfluxDB client libraries people run set themselves up against Augur and write to it.

Usage: influx_clients.py URL WRITE_TOKEN READ_TOKEN T0_SECONDS

The 1.x client (PyPI `influxdb`) pings, creates a database and a retention policy, writes one
point at every precision it offers and one through `precision=ns`, lists databases and policies,
and is refused a SELECT with an error naming what to use instead; with a read-only token it may
list but not create. The 2.x client (PyPI `influxdb-client`) pings, reads the version, build,
readiness and health, and writes one point at every precision. Each point's time is T0 in its
precision, so tests/influx_clients.rs can check what arrived. Exits non-zero at the first check
that fails.
"""

import sys
from urllib.parse import urlparse

from influxdb import InfluxDBClient as V1Client
from influxdb.exceptions import InfluxDBClientError
from influxdb_client import InfluxDBClient as V2Client
from influxdb_client import Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

url, writer, reader, t0 = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
address = urlparse(url)

# 1.x: the password is the token (HTTP Basic).
v1 = V1Client(host=address.hostname, port=address.port, username="telegraf", password=writer, database="telegraf")
version = v1.ping()
assert version == "1.8.10", version
v1.create_database("telegraf")
v1.create_retention_policy("week", "7d", 1, database="telegraf")
# T0 is a whole hour, so it is a whole number in every unit.
in_unit = {"h": t0 // 3600, "m": t0 // 60, "s": t0, "ms": t0 * 10**3, "u": t0 * 10**6, "n": t0 * 10**9}
for precision, time in in_unit.items():
    point = {"measurement": f"v1_{precision}", "tags": {"host": "a"}, "time": time, "fields": {"value": 1.0}}
    assert v1.write_points([point], time_precision=precision)
# What scripts copied from the 1.x documentation send: precision=ns.
assert v1.write([f"v1_ns,host=a value=1 {t0 * 10**9}"], params={"db": "other", "precision": "ns"}, protocol="line")
names = {d["name"] for d in v1.get_list_database()}
assert {"telegraf", "other"} <= names, names
policies = v1.get_list_retention_policies("telegraf")
assert [p["name"] for p in policies] == ["autogen"], policies
try:
    v1.query("SELECT * FROM cpu")
    raise AssertionError("a SELECT was answered")
except InfluxDBClientError as error:
    assert "/api/v1/rollups" in str(error) and "Parquet" in str(error), error

read_only = V1Client(host=address.hostname, port=address.port, username="grafana", password=reader)
assert "telegraf" in {d["name"] for d in read_only.get_list_database()}
try:
    read_only.create_database("nope")
    raise AssertionError("a read-only token created a database")
except InfluxDBClientError as error:
    assert error.code == 403 and "write scope" in str(error), error

# 2.x.
with V2Client(url=url, token=writer, org="augur") as v2:
    assert v2.ping()
    assert v2.version() == "1.8.10", v2.version()
    assert v2.build() == "OSS", v2.build()
    ready = v2.ready()
    assert ready.status == "ready" and ready.started is not None and ready.up, ready
    assert v2.health().status == "pass"
    writes = v2.write_api(write_options=SYNCHRONOUS)
    per_unit = {WritePrecision.S: 1, WritePrecision.MS: 10**3, WritePrecision.US: 10**6, WritePrecision.NS: 10**9}
    for precision, per_second in per_unit.items():
        point = Point(f"v2_{precision}").tag("host", "a").field("value", 2.0).time(t0 * per_second, precision)
        writes.write(bucket="telegraf", record=point, write_precision=precision)

print("ok")
