"""Metrics of the content pipeline: guarded writes, generations, store loss, disk snapshot."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
