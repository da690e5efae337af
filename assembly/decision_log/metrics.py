"""Prometheus metrics of the decision log."""

from __future__ import annotations

from prometheus_client import Counter

DECISION_LOG = Counter(
    "microbridge_decision_log_total",
    "Decision records of sampled page views, by outcome",
    ["outcome"],
)
LOGGED = DECISION_LOG.labels(outcome="logged")
DROPPED = DECISION_LOG.labels(outcome="dropped")  # the queue was full
FAILED = DECISION_LOG.labels(outcome="failed")  # the store refused the batch
