"""Prometheus metrics, defined once and imported where they are observed."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

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
SYNC_DURATION = Histogram(
    "microbridge_sync_seconds",
    "Duration of one Contentful sync run",
    ["mode"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SYNC_RUNS = Counter("microbridge_sync_runs_total", "Sync runs by outcome", ["outcome"])
SYNC_LAST_SUCCESS = Gauge(
    "microbridge_sync_last_success_timestamp_seconds",
    "Unix time of the last page applied by any replica (as last read from the store)",
)
SYNC_LAG = Gauge("microbridge_sync_lag_seconds", "Seconds since the last successful sync")
_last_sync = [0.0]
SYNC_LAG.set_function(lambda: time.time() - _last_sync[0] if _last_sync[0] else 0.0)


def note_synced_at(timestamp: float) -> None:
    """Record the newest known sync time (this replica's or another's, read from the store)."""
    _last_sync[0] = max(_last_sync[0], timestamp)
    SYNC_LAST_SUCCESS.set(_last_sync[0])


CONTENT_VERSION = Gauge("microbridge_content_version", "Content version of the live library")
LIBRARY_ISSUES = Gauge("microbridge_library_issues", "Entries skipped by the library compiler")
