"""Prometheus metrics of the tracking API and the event pipeline."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter(
    "microbridge_events_accepted_total", "Messages appended to the event stream", ["source"]
)
EVENTS_NOT_REPLICATED = Counter(
    "microbridge_events_not_replicated_total",
    "Messages refused (503) because WAIT saw fewer replicas than SEGMENT_INGEST_WAIT_REPLICAS",
)
EVENTS_REJECTED = Counter(
    "microbridge_events_rejected_total", "Tracking API messages rejected, one per message"
)
REQUESTS_REFUSED = Counter(
    "microbridge_tracking_refused_total",
    "Tracking API requests refused as a whole, by error",
    ["error"],
)
EVENTS_PROCESSED = Counter(
    "microbridge_events_processed_total",
    "Stream entries handled by consumers, by outcome",
    ["outcome"],  # applied, duplicate, erased, failed, dead_lettered
)
APPLY_CONFLICTS = Counter(
    "microbridge_consumer_conflicts_total",
    "Batch transactions retried because a profile changed concurrently",
)
CONSUMER_ERRORS = Counter(
    "microbridge_consumer_errors_total", "Consumer loop errors (the loop backs off)", ["error"]
)
BATCH_SECONDS = Histogram(
    "microbridge_consumer_batch_seconds",
    "Time to apply one batch of stream entries",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENT_LAG = Histogram(
    "microbridge_event_lag_seconds",
    "From a message's append to the stream to its effect on the profile",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5, 10, 30, 60),
)
AUDIENCES_IGNORED = Counter(
    "microbridge_audience_changes_ignored_total",
    "Engage audience, computed-trait and persona changes ignored: not from a trusted source",
    ["source"],
)
PROFILE_PULLS = Counter(
    "microbridge_segment_profile_pulls_total",
    "Profile API pulls scheduled on a profile miss, by outcome",
    ["outcome"],
)
PENDING = Gauge("microbridge_consumer_pending", "Entries delivered but not acknowledged (group)")

OUTCOMES = {
    name: EVENTS_PROCESSED.labels(outcome=name)
    for name in ("applied", "duplicate", "erased", "failed", "dead_lettered")
}
