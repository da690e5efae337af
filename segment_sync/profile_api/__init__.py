"""Segment's Profile API: the client and the background pulls for unknown visitors."""
