"""Prometheus metrics of model scoring."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MODEL_VERSION = Gauge(
    "microbridge_model_version", "Version of the ranking model this replica serves (0: none)"
)
MODEL_LOADED = Gauge(
    "microbridge_model_loaded", "1 when a valid ranking model is in force, 0 when rules decide"
)
MODEL_LOAD_FAILURES = Counter(
    "microbridge_model_load_failures_total",
    "Published model versions this replica refused (broken or missing artifact)",
)
