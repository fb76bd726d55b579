"""Faust entry points: the app, its topics and thin agents that hand events to projectors and services."""
