"""Contract tests: one set of assertions per port, run against its fake (unit) and its real adapter (integration)."""
