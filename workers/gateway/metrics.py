"""The gateway's Prometheus metrics, served on its HTTP port at ``/metrics``.

``maas_gateway_requests_total{protocol,tenant,status}`` counts answered requests by
HTTP status (gRPC's are counted by the HTTP status they correspond to), so one alert
covers both doors; ``maas_gateway_request_seconds`` is the latency of inference
requests; ``maas_gateway_pending_requests`` the requests waiting for a Result.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "maas_gateway_requests", "Requests answered by the gateway", ["protocol", "tenant", "status"]
)
LATENCY = Histogram(
    "maas_gateway_request_seconds",
    "Inference request latency, receipt to response",
    ["protocol", "tenant"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PENDING = Gauge("maas_gateway_pending_requests", "Inference requests waiting for their Result")
BROKER_UP = Gauge("maas_gateway_broker_reachable", "1 when the gateway reaches the broker")


def answered(protocol: str, tenant: str, status: int, seconds: float | None = None) -> None:
    REQUESTS.labels(protocol, tenant, str(status)).inc()
    if seconds is not None:
        LATENCY.labels(protocol, tenant).observe(seconds)
