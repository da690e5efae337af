"""Model-scored variants (issue 13, item 2): `cli.py train` fits a per-slot ranking model from
the decision log and the goal events, publishes a versioned artifact to Redis, and every
replica evaluates it in process as the model term of conflict resolution (docs/learning.md)."""
