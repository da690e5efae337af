"""Engage audience and computed-trait changes, read into one `AudienceChange`."""
