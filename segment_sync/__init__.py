"""Segment: the tracking API, the event stream, profiles, signals, audiences, the Profile API."""
