"""Targeting leaves that import nothing of ours: GrowthBook bucketing."""
