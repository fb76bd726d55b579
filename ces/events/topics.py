"""The Kafka topics CES owns: names, keys and retention (created by `ces.adapters.kafka.admin`)."""

from __future__ import annotations

from dataclasses import dataclass, field

FOREVER = "-1"
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    config: dict[str, str] = field(default_factory=dict)


# Rates, audits and rejections are the event log that `ces replay` rebuilds the database from: kept
# forever (a rejection is a decision of record: its request id can never be converted later).
# Requests, fetch failures and dead letters are operational: kept long enough to investigate and re-drive.
RATES_FETCHED = TopicSpec("rates-fetched", "BASE:TARGET", {"retention.ms": FOREVER})
RATE_FETCH_FAILURES = TopicSpec("rate-fetch-failures", "provider", {"retention.ms": str(30 * DAY_MS)})
CONVERSION_REQUESTS = TopicSpec("conversion-requests", "request_id", {"retention.ms": str(7 * DAY_MS)})
CONVERSIONS_AUDITED = TopicSpec("conversions-audited", "request_id", {"retention.ms": FOREVER})
CONVERSIONS_REJECTED = TopicSpec("conversions-rejected", "request_id", {"retention.ms": FOREVER})
DEAD_LETTERS = TopicSpec("ces-dead-letters", "source topic key", {"retention.ms": str(30 * DAY_MS)})

ALL_TOPICS = (
    RATES_FETCHED,
    RATE_FETCH_FAILURES,
    CONVERSION_REQUESTS,
    CONVERSIONS_AUDITED,
    CONVERSIONS_REJECTED,
    DEAD_LETTERS,
)
