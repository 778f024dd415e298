"""Applying events and time to customer state: the worker's core."""
