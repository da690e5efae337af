"""The decision log: every assemble answer's id, a sampled record of what decided it, replay.

- `ids`: cheap, time-ordered decision ids (ms timestamp + 48 random bits);
- `record`: what the hot path hands over (references only) and its JSON form, built off-path;
- `writer`: the batched off-path writer; `store`: the Redis stream and its two indexes;
- `history`: the last compiled libraries of this replica, for replay;
- `replay`: re-run a logged decision; `service`: the facade routes and the app use.
See docs/decisions.md §13 and docs/storage.md.
"""
