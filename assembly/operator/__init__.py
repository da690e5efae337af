"""Operator routes behind the admin token: a resync on demand, what this replica's library
holds, and what the engine knows about one visitor."""
