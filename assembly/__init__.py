"""The decision engine: targeting, rules, experiments, and `POST /v1/assemble` (DESIGN.md §5)."""
