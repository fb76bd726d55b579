"""Adapters: the clients CES uses to talk to the world outside the domain (FX providers, Redis, the database)."""
