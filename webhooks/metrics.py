"""Prometheus metrics of the webhook receivers."""

from __future__ import annotations

from prometheus_client import Counter

CONTENTFUL_WEBHOOKS = Counter(
    "microbridge_webhook_contentful_total",
    "Contentful webhooks by answer: status (applied, duplicate, ...) or error name",
    ["answer"],
)
SEGMENT_WEBHOOK_EVENTS = Counter(
    "microbridge_segment_webhook_events_total",
    "Events received on POST /webhooks/segment, by outcome",
    ["outcome"],  # accepted, duplicate, erased, rejected
)
