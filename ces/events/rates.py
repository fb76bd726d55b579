"""Rate ingestion events: `RateFetched` (one per pair per provider publication) and `RateFetchFailed`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal
from uuid import UUID, uuid5

from pydantic import Field

from ces.events.base import CurrencyCode, DecimalStr, Event, UtcDatetime, rfc3339

# Fixed namespace: the same provider publication always yields the same ids, on any worker, in any replay.
RATE_NAMESPACE = UUID("6f1d3a52-3c55-4a8e-9a7e-5b1c2f0e8d41")


def rate_id_for(provider: str, published_at: datetime, base: str, target: str) -> UUID:
    """The idempotency key of a published rate: provider + publication timestamp + pair."""
    return uuid5(RATE_NAMESPACE, f"rate|{provider}|{rfc3339(published_at)}|{base}|{target}")


class RateFetched(Event):
    TOPIC: ClassVar[str] = "rates-fetched"

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
            event_id=uuid5(RATE_NAMESPACE, f"RateFetched|{rate_id}"),
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


class RateFetchFailed(Event):
    TOPIC: ClassVar[str] = "rate-fetch-failures"

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
