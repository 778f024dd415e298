"""The identity graph: one customer, however they reach us (resolution, merges, unmerges)."""
