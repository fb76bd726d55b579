"""Projections: events in, immutable PostgreSQL rows and the Redis cache out."""
