"""Rate events: `RateFetched` (one per pair per provider publication), `RateRevoked`, `RateFetchFailed`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from ces.events.base import CurrencyCode, DecimalStr, Event, UtcDatetime, rfc3339
from ces.events.ids import NameBasedIds
from ces.events.topics import RATE_FETCH_FAILURES, RATES_FETCHED

# Fixed namespace: the same provider publication always yields the same ids, on any worker, in any replay.
RATE_NAMESPACE = UUID("6f1d3a52-3c55-4a8e-9a7e-5b1c2f0e8d41")
RATE_IDS = NameBasedIds(RATE_NAMESPACE)


# The names hashed into a rate's ids, spelled here only (`rate_id_for`, `RateFetched.for_quote` and the
# backfill's `PublicationIds` all derive theirs from these).
_RATE_FETCHED_IDS = RATE_IDS.prefixed("RateFetched|")  # + the rate id's text: its `RateFetched` event id


def rate_name_prefix(provider: str, published_at: datetime, base: str) -> str:
    """A rate id's name up to its target currency: the rates of one publication share it."""
    return f"rate|{provider}|{rfc3339(published_at)}|{base}|"


def rate_id_for(provider: str, published_at: datetime, base: str, target: str) -> UUID:
    """The idempotency key of a published rate: provider + publication timestamp + pair."""
    return RATE_IDS(rate_name_prefix(provider, published_at, base) + target)


def rate_fetched_event_id(rate_id: UUID) -> UUID:
    """The `event_id` of the `RateFetched` carrying `rate_id` (one event per rate, however often it is sent)."""
    return _RATE_FETCHED_IDS(str(rate_id))


def rate_fetched_event_ids(rate_ids: Sequence[str]) -> list[str]:
    """`str(rate_fetched_event_id(UUID(r)))` for each rate id given as its lower-case hyphenated text, in one
    loop: the rate projection checks every row's event id against it (docs/rates.md, "One id, one value")."""
    return _RATE_FETCHED_IDS.texts(rate_ids)


class PublicationIds:
    """`(rate id, RateFetched event id)` as text for each target of one publication, the two ids
    `rate_id_for` and `RateFetched.for_quote` derive, with the publication's part of the name hashed once
    (the backfill derives 443,404 ids; tests/unit/test_backfill_encoding.py holds them to the models')."""

    __slots__ = ("_rates",)

    def __init__(self, provider: str, published_at: datetime, base: str) -> None:
        self._rates = RATE_IDS.prefixed(rate_name_prefix(provider, published_at, base))

    def __call__(self, target: str) -> tuple[str, str]:
        rate_id = self._rates.text(target)
        return rate_id, _RATE_FETCHED_IDS.text(rate_id)

    def texts(self, targets: Sequence[str]) -> tuple[list[str], list[str]]:
        """The rate ids and the event ids of `targets`, in their order: `__call__` for all of them at once."""
        rate_ids = self._rates.texts(targets)
        return rate_ids, _RATE_FETCHED_IDS.texts(rate_ids)


class RateFetched(Event):
    TOPIC: ClassVar[str] = RATES_FETCHED.name

    event_type: Literal["RateFetched"] = "RateFetched"
    schema_version: Literal[1] = 1
    rate_id: UUID
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    rate_value: DecimalStr = Field(gt=Decimal(0))
    provider_name: str = Field(min_length=1, max_length=64)
    published_at: UtcDatetime
    fetched_at: UtcDatetime
    fetch_id: UUID

    def key(self) -> bytes:
        return f"{self.base_currency}:{self.target_currency}".encode()

    @classmethod
    def for_quote(
        cls,
        *,
        provider_name: str,
        base_currency: str,
        target_currency: str,
        rate_value: Decimal,
        published_at: datetime,
        fetched_at: datetime,
        fetch_id: UUID,
    ) -> RateFetched:
        rate_id = rate_id_for(provider_name, published_at, base_currency, target_currency)
        return cls(
            event_id=rate_fetched_event_id(rate_id),
            occurred_at=fetched_at,
            rate_id=rate_id,
            base_currency=base_currency,
            target_currency=target_currency,
            rate_value=rate_value,
            provider_name=provider_name,
            published_at=published_at,
            fetched_at=fetched_at,
            fetch_id=fetch_id,
        )


class RateRevoked(Event):
    """An operator withdrew a stored rate (`ces rates revoke`): lookups and the cache stop using it.

    Nothing is deleted: the row stays, so every audit that used it still resolves. Published on
    `rates-fetched` keyed by the pair, so it is ordered after the rate it names and the rate projection
    applies it. `event_id` is derived from `rate_id`: a rate is revoked once, the first revocation stands.
    """

    TOPIC: ClassVar[str] = RATES_FETCHED.name

    event_type: Literal["RateRevoked"] = "RateRevoked"
    schema_version: Literal[1] = 1
    rate_id: UUID
    base_currency: CurrencyCode
    target_currency: CurrencyCode
    reason: str = Field(min_length=1, max_length=1000, description="why the rate was withdrawn")
    revoked_by: str = Field(min_length=1, max_length=128, description="who withdrew it")
    revoked_at: UtcDatetime

    def key(self) -> bytes:
        return f"{self.base_currency}:{self.target_currency}".encode()

    @classmethod
    def for_rate(
        cls, *, rate_id: UUID, base_currency: str, target_currency: str, reason: str, revoked_by: str, at: datetime
    ) -> RateRevoked:
        return cls(
            event_id=RATE_IDS(f"RateRevoked|{rate_id}"),
            occurred_at=at,
            rate_id=rate_id,
            base_currency=base_currency,
            target_currency=target_currency,
            reason=reason,
            revoked_by=revoked_by,
            revoked_at=at,
        )


class RateFetchFailed(Event):
    TOPIC: ClassVar[str] = RATE_FETCH_FAILURES.name

    event_type: Literal["RateFetchFailed"] = "RateFetchFailed"
    schema_version: Literal[1] = 1
    provider_name: str
    fetch_id: UUID
    attempts: int = Field(ge=1)
    retry_delays_ms: list[int] = Field(description="the backoff slept before each retry, in order")
    last_error: str
    retryable: bool = Field(description="false for errors retrying cannot fix (a 4xx, a bad access key)")
    failed_at: UtcDatetime

    def key(self) -> bytes:
        return self.provider_name.encode()
