"""Metrics of the content pipeline: syncs, guarded writes, generations, store loss, snapshot."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

CONTENT_WRITES_SKIPPED = Counter(
    "microbridge_content_writes_skipped_total",
    "Entity writes refused because the store holds a newer revision",
)
GENERATIONS_INSTALLED = Counter(
    "microbridge_library_generations_total", "Complete library generations installed by a sync"
)
GENERATIONS_REJECTED = Counter(
    "microbridge_library_generations_rejected_total",
    "Staged generations discarded before install (incomplete or failed validation)",
)
STORE_LOST = Gauge(
    "microbridge_store_lost",
    "1 while the store has lost its content (epoch marker gone) and the replica serves its "
    "last complete library",
)
STORE_LOSSES = Counter(
    "microbridge_store_losses_total", "Times a replica saw the store's epoch marker disappear"
)
SNAPSHOT_WRITES = Counter(
    "microbridge_library_snapshot_writes_total",
    "Last-good library snapshots written to disk",
    ["outcome"],
)
LIBRARY_GENERATION_AGE = Gauge(
    "microbridge_library_generation_built_timestamp_seconds",
    "When the live library's generation was built (Unix time)",
)


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
