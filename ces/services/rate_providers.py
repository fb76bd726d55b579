"""The rate provider port: the quote a provider returns, the errors it raises, and what a client must do.

Provider clients (`ces.adapters.providers`) meet it; the fetcher and the backfill use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol


@dataclass(frozen=True)
class ProviderQuote:
    """One provider answer: how many units of each target currency one unit of `base_currency` buys.

    `rates` holds the provider's exact digits (`Decimal("0.83578")`, never a float round trip).
    `published_at` is the provider's own publication time, normalised to UTC; each client documents
    how it derives it when the provider only gives a date.
    """

    provider_name: str
    base_currency: str
    published_at: datetime
    rates: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        if self.published_at.tzinfo is None or self.published_at.utcoffset() is None:
            raise ValueError(f"published_at must be timezone-aware, got {self.published_at!r}")
        # Frozen means frozen: callers must not be able to edit a quote's rates after the fact.
        object.__setattr__(self, "published_at", self.published_at.astimezone(UTC))
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))


class ProviderError(Exception):
    """A provider could not give a usable answer. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """Worth retrying: timeout, connection failure, HTTP 5xx/408/429, or a body we could not parse."""


class PermanentProviderError(ProviderError):
    """Retrying will not help until someone changes configuration: HTTP 4xx, bad access key, bad symbols."""


def check_not_future(quote: ProviderQuote, now: datetime, max_skew: timedelta) -> ProviderQuote:
    """Refuse a quote dated later than `now + max_skew`: a provider error that retrying will not fix.

    Published, it would become "the newest" rate of every pair for as long as its date lies ahead (a
    Fixer timestamp may be any instant up to year 9999), and the projection would dead-letter it anyway.
    """
    if quote.published_at > now + max_skew:
        raise PermanentProviderError(
            f"{quote.provider_name}: quote dated {quote.published_at.isoformat()}, more than "
            f"{int(max_skew.total_seconds())}s after now ({now.isoformat()}): implausible publication time"
        )
    return quote


class RateProvider(Protocol):
    """What the rate-ingestion side needs from a provider."""

    name: str

    async def fetch_latest(self) -> ProviderQuote: ...

    def fetch_history(self, start: date, end: date) -> AsyncIterator[ProviderQuote]:
        """Quotes for each publication day in `[start, end]`, oldest first (used for backfill)."""
        ...
