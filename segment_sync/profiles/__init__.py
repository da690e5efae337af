"""Visitor profiles: the read model, the Redis store, identity links and behavioural signals."""
