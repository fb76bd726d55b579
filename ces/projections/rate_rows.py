"""What projecting rate events yields, and the port that does it: rows inserted, refusals, withdrawals.

The rate projection (`rate_projection.py`) owns this contract; `ces.adapters.postgres.rate_projector` meets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from ces.domain.rates import Rate, Withdrawal
from ces.events.rates import RateFetched, RateRevoked
from ces.projections.rate_wire import RateRow

# A `RateFetched` comes decoded, or as its row when its bytes were canonical (`rate_wire.read_row`).
RateEvent = RateFetched | RateRow | RateRevoked

# Stable reasons for the events the projection refuses (dead-letter reasons, metric labels; docs/rates.md).
IMPLAUSIBLE_PUBLISHED_AT = "implausible_published_at"
SAME_CURRENCY_PAIR = "same_currency_pair"
CONFLICTING_REPUBLICATION = "conflicting_republication"
UNKNOWN_RATE = "unknown_rate"


def rate_of(event: RateFetched) -> Rate:
    return Rate(
        rate_id=event.rate_id,
        base_currency=event.base_currency,
        target_currency=event.target_currency,
        rate_value=event.rate_value,
        provider_name=event.provider_name,
        published_at=event.published_at,
        fetched_at=event.fetched_at,
    )


@dataclass(frozen=True)
class Refusal:
    """An event the projection will not apply, whatever the retries: `index` is its place in the batch."""

    index: int
    reason: str
    detail: str


@dataclass
class Projection:
    """What one batch did. `current` holds, for the cache, the rows PostgreSQL holds for the accepted
    `RateFetched` events, revoked rows left out: the cache never sees a value PostgreSQL does not have."""

    inserted: list[UUID] = field(default_factory=list)
    revocations_inserted: list[UUID] = field(default_factory=list)
    current: list[Rate] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


class RateRows(Protocol):
    def project(self, events: Sequence[RateEvent]) -> Projection:
        """Apply a batch in one transaction (idempotent); database errors propagate to the caller's policy."""
