"""Prometheus metrics of CES (one registry per process; exposed on the worker's and gateway's /metrics)."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

RATE_FETCHES = Counter("ces_rate_fetches", "Provider fetches by outcome", ["provider", "outcome"])
RATE_FETCH_RETRIES = Counter("ces_rate_fetch_retries", "Provider fetch attempts that were retried", ["provider"])
RATE_EVENTS = Counter("ces_rate_events", "RateFetched events consumed by the projection")
RATE_ROWS = Counter("ces_rate_rows_inserted", "exchange_rate rows inserted (duplicates excluded)")
RATE_REFUSED = Counter(
    "ces_rate_events_refused", "Rate events the projection refused (dead-lettered), by reason", ["reason"]
)
RATE_REVOCATIONS = Counter("ces_rate_revocations", "exchange_rate_revocation rows inserted")
CACHE_ERRORS = Counter("ces_rate_cache_errors", "Redis cache operations that failed", ["operation"])
DEAD_LETTERS = Counter("ces_dead_letters", "Messages sent to the dead-letter topic", ["source_topic", "reason"])
BATCH_SECONDS = Histogram("ces_projection_batch_seconds", "Time to project one batch", ["projection"])
CACHE_MISSES = Counter("ces_rate_cache_misses", "Rate lookups the Redis cache could not answer")
RATE_TRACKING_INVALIDATIONS = Counter(
    "ces_rate_tracking_invalidations", "Invalidation pushes Redis sent the worker's rate tracking"
)
CONSUMED = Counter("ces_consumed_messages", "Messages consumed and handled", ["consumer"])
BATCH_FAILURES = Counter(
    "ces_batch_failures", "Batch (or isolated message) handling that raised, by failure kind", ["consumer", "kind"]
)
HANDLER_ERRORS = Counter(
    "ces_handler_errors", "Messages dead-lettered as handler_error after their retries ran out", ["consumer"]
)
TIMER_ERRORS = Counter("ces_timer_errors", "Fetch timer ticks that raised (logged; the timer goes on)", ["provider"])
# Where a conversion batch's time goes in the worker (docs/http.md accounts for the round trip with it).
CONVERSION_STAGE_SECONDS = Histogram(
    "ces_conversion_stage_seconds",
    "Time per conversion batch in each stage: parse, decide (rate lookup), record (PostgreSQL commit), publish",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
)
CONVERSION_BATCH_SIZE = Histogram(
    "ces_conversion_batch_size", "Requests per conversion batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512, 2000)
)
CONVERSIONS = Counter("ces_conversions", "Conversion decisions published", ["outcome"])
HTTP_REQUESTS = Histogram(
    "ces_http_request_seconds",
    "Gateway request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
GATEWAY_PENDING = Gauge("ces_gateway_pending_conversions", "Conversions waiting for their result")
GATEWAY_RESULTS_SEEN = Counter(
    "ces_gateway_results_seen", "Results read by this gateway instance (its own and others')"
)
AUTH_REFUSALS = Counter("ces_gateway_auth_refusals", "Requests refused by the gateway's key check", ["reason"])
UNAUTHENTICATED_REQUESTS = Counter(
    "ces_unauthenticated_requests",
    "Conversion requests naming requested_by without a valid gateway signature (rejected), by why",
    ["failure"],
)


@functools.cache
def rate_tracking_up() -> Gauge:
    """Registered when a process starts rate tracking (the worker), not at import: every other process (the
    gateway) would show it at 0, which reads as "tracking is down"."""
    return Gauge(
        "ces_rate_tracking_up", "1 while the worker's Redis tracking connection is up (rates held without asking)"
    )
