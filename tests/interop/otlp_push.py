"""The OpenTelemetry Python SDK pushes metrics to Augur with its OTLP/HTTP exporter.

Usage: otlp_push.py URL TOKEN

Records, through the SDK's own instruments, one of each kind Augur maps (a counter, an up-down
counter, an explicit and an exponential histogram, an observable gauge, and a delta counter), then
exports them once (at shutdown), the cumulative ones gzip-compressed and the delta ones plain. Exits non-zero
unless every export succeeded. tests/otlp.rs checks what arrived.
"""

import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

url, token = sys.argv[1], sys.argv[2]
results = []


class RecordingExporter(OTLPMetricExporter):
    """The SDK's exporter, keeping the result of each export."""

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        results.append(result)
        return result


def provider(exporter, views=()):
    # A long interval: the test exports once, at shutdown, so what it sent is known exactly.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"host.name": "web1", "cloud.region": "eu-west", "service.name": "shop"})
    return MeterProvider(metric_readers=[reader], resource=resource, views=list(views))


headers = {"Authorization": f"Token {token}"}
cumulative = provider(
    RecordingExporter(endpoint=f"{url}/v1/metrics", headers=headers, compression=Compression.Gzip),
    views=[View(instrument_name="shop.size", aggregation=ExponentialBucketHistogramAggregation())],
)
meter = cumulative.get_meter("augur.interop")
orders = meter.create_counter("shop.orders")
orders.add(3, {"payment": "card"})
orders.add(4, {"payment": "card"})
queue = meter.create_up_down_counter("shop.queue")
queue.add(5)
queue.add(-2)
latency = meter.create_histogram("shop.latency", unit="ms")
for value in (5, 30, 700):
    latency.record(value)
size = meter.create_histogram("shop.size")
for value in (1, 2, 4, 1000):
    size.record(value)
meter.create_observable_gauge("shop.temperature", callbacks=[lambda options: [Observation(21.5, {"room": "a"})]])

delta = provider(
    RecordingExporter(
        endpoint=f"{url}/v1/metrics", headers=headers, preferred_temporality={Counter: AggregationTemporality.DELTA}
    )
)
refunds = delta.get_meter("augur.interop").create_counter("shop.refunds")
refunds.add(2)

# A reader's shutdown exports what it holds once more, and only once.
for p in (cumulative, delta):
    p.shutdown()
if not results or any(r != MetricExportResult.SUCCESS for r in results):
    sys.exit(f"an export failed: {results}")
print(f"{len(results)} exports succeeded")
