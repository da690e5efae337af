"""Experiments: arm assignment, counters' results, statistics, and the rollout guardrail."""
