"""The public wire contract: pydantic events with stable type names and versions, as UTF-8 JSON."""
