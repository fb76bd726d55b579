"""Adapters to Redis: the latest-rate cache."""
