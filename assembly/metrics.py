"""Prometheus metrics of the decision engine."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

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
DECISION_WRITES = Counter(
    "microbridge_decision_writes_total",
    "Visitor decision-state writes from page views, by outcome",
    ["outcome"],
)
WRITES_FLUSHED = DECISION_WRITES.labels(outcome="flushed")
WRITES_DROPPED = DECISION_WRITES.labels(outcome="dropped")  # queue full
WRITES_FAILED = DECISION_WRITES.labels(outcome="failed")  # the store refused the batch
EXPOSURES = Counter(
    "microbridge_exposures_total", "Exposures recorded (once per visitor and session)", ["kind"]
)
CONVERSIONS = Counter(
    "microbridge_conversions_total", "Conversions attributed to a test arm", ["kind"]
)
KILL_SWITCHES = Gauge(
    "microbridge_kill_switches_active", "Admin kill switches in force on this replica"
)
GUARDRAIL_TRIPS = Counter(
    "microbridge_guardrail_trips_total", "Rollouts switched off by the guardrail"
)
BANDIT_UPDATES = Counter(
    "microbridge_bandit_updates_total", "New bandit arm weights computed and stored"
)
BANDIT_ALLOCATIONS = Gauge(
    "microbridge_bandit_allocations_loaded",
    "Bandit experiments whose computed weights this replica has in force",
)
CONTEXTUAL_POLICIES = Gauge(
    "microbridge_contextual_policies_loaded",
    "Contextual bandits whose fitted parameters this replica has in force",
)
CONTEXTUAL_FITS = Counter(
    "microbridge_contextual_fits_total", "Contextual bandit parameters fitted and stored"
)
CONTEXTUAL_REFUSED = Counter(
    "microbridge_contextual_refused_total",
    "Stored contextual parameters a replica refused to serve (broken); the bandit weights decide",
)
