"""The signed Segment webhook: events and Engage audience changes into the stream."""
