"""Trigger discovery: which signals, traits and audiences predict a goal event (issue 13).

Off the hot path: `cli.py insights` reads the event stream and the profile store in bounded
batches, builds a per-visitor table and writes a JSON and an HTML report (docs/learning.md);
`GET /admin/insights` serves the last report written.
"""
