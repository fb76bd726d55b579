"""Application services: the use cases agents, HTTP handlers and the CLI call."""
