"""The event stream: the producer, the consumer group, and applying entries to profiles."""
