"""HTTP and assemble metrics (the content pipeline's are in integration/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_LATENCY = Histogram(
    "microbridge_request_seconds",
    "HTTP request latency by route and status class",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
ASSEMBLE_SLOTS = Counter(
    "microbridge_assemble_slots_total", "Slots assembled, by decision source", ["source"]
)
ASSEMBLE_DEGRADED = Counter(
    "microbridge_assemble_degraded_total", "Assemble answers marked degraded, by cause", ["cause"]
)
FALLBACK_USED = Counter(
    "microbridge_fallback_total", "Answers served from the bundled fallback library", ["cause"]
)
SLOTS_BY_SOURCE = {
    source: ASSEMBLE_SLOTS.labels(source=source)
    for source in ("variant", "experiment", "baseline", "fallback")
}
