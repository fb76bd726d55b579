"""Adapters to PostgreSQL (SQLAlchemy Core, psycopg2): tables, the audit store, the rate store, leases."""
