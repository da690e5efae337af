"""Cross-cutting HTTP metrics. Every package declares its own in its `metrics.py`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_LATENCY = Histogram(
    "microbridge_request_seconds",
    "HTTP request latency by route and status class",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
CONNECTIONS_REFUSED = Counter(
    "microbridge_connections_refused_total",
    "Connections answered 503 at once because the server was at BRIDGE_MAX_CONNECTIONS",
)
