"""The HTTP gateway: synchronous callers in, events out; reads served from the projections."""
