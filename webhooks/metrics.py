"""Prometheus metrics of the webhook receivers."""

from __future__ import annotations

from prometheus_client import Counter

CONTENTFUL_WEBHOOKS = Counter(
    "microbridge_webhook_contentful_total",
    "Contentful webhooks by answer: status (applied, duplicate, ...) or error name",
    ["answer"],
)
