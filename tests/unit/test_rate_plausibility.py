"""Plausible rates only: publication times past their fetch, out-of-range instants, future-dated quotes and
rates, and the `RateRevoked` contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from ces.adapters.providers.fixer import FixerClient
from ces.domain.conversion import RejectionReason, check_fresh
from ces.domain.rates import Rate, direct, implausible_publication
from ces.events.rates import RateFetched, RateRevoked
from ces.events.registry import UndecodableEvent, decode
from ces.services.rate_providers import PermanentProviderError, ProviderQuote, check_not_future

T0 = datetime(2024, 3, 14, 15, 0, tzinfo=UTC)
SKEW = timedelta(seconds=300)


def fetched(published_at: datetime, fetched_at: datetime = T0) -> RateFetched:
    return RateFetched.for_quote(
        provider_name="fixer",
        base_currency="EUR",
        target_currency="USD",
        rate_value=Decimal("1.0892"),
        published_at=published_at,
        fetched_at=fetched_at,
        fetch_id=uuid.uuid4(),
    )


def test_a_publication_may_lead_its_fetch_by_the_skew_and_no_more() -> None:
    assert implausible_publication(T0 - timedelta(days=3), T0, SKEW) is None
    assert implausible_publication(T0 + SKEW, T0, SKEW) is None
    why = implausible_publication(T0 + SKEW + timedelta(microseconds=1), T0, SKEW)
    assert why is not None and "300s clock skew" in why
    assert implausible_publication(datetime(9999, 12, 31, tzinfo=UTC), T0, SKEW) is not None


@pytest.mark.parametrize(
    "instant",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999-23:59"],
)
def test_instants_outside_utc_range_are_invalid_events_not_overflow_errors(instant: str) -> None:
    payload = json.loads(fetched(T0).to_json())
    payload["published_at"] = instant
    with pytest.raises(UndecodableEvent) as caught:
        decode(json.dumps(payload).encode(), expected=RateFetched)
    assert caught.value.reason == "invalid_event" and "published_at" in caught.value.detail


@given(
    year=st.sampled_from([1, 2, 9998, 9999]),
    hours=st.integers(-23, 23),
    field=st.sampled_from(["published_at", "fetched_at", "occurred_at"]),
)
def test_any_offset_at_the_edges_decodes_or_is_an_undecodable_event(year: int, hours: int, field: str) -> None:
    payload = json.loads(fetched(T0).to_json())
    payload[field] = f"{year:04d}-{'12-31T23:59:59' if year > 2 else '01-01T00:00:00'}{hours:+03d}:00"
    try:
        decode(json.dumps(payload).encode(), expected=RateFetched)
    except UndecodableEvent as exc:
        assert exc.reason == "invalid_event"


def test_a_rate_from_the_future_is_never_fresh() -> None:
    leg = Rate(uuid.uuid4(), "EUR", "USD", Decimal("1.08"), "fixer", T0 + timedelta(seconds=1), T0)
    rejection = check_fresh(direct(leg), T0, timedelta(days=6))
    assert rejection is not None and rejection.reason is RejectionReason.STALE_RATE
    assert "after the conversion time" in rejection.message
    assert check_fresh(direct(leg), T0 + timedelta(seconds=1), timedelta(days=6)) is None  # age 0 is fine


def test_a_provider_quote_beyond_now_plus_skew_is_a_permanent_error() -> None:
    quote = ProviderQuote("fixer", "EUR", T0 + SKEW + timedelta(seconds=1), {"USD": Decimal("1.08")})
    with pytest.raises(PermanentProviderError, match="implausible publication time"):
        check_not_future(quote, T0, SKEW)
    assert check_not_future(quote, T0 + timedelta(seconds=1), SKEW) is quote


@pytest_asyncio.fixture
async def future_fixer() -> AsyncIterator[TestServer]:
    async def latest(request: web.Request) -> web.Response:
        # A timestamp Fixer's parser accepts (before year 9999) but no clock has reached.
        return web.json_response({"success": True, "base": "EUR", "timestamp": 253_000_000_000, "rates": {"USD": 1.08}})

    app = web.Application()
    app.router.add_get("/latest", latest)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def test_the_fixer_client_refuses_a_future_dated_latest_quote(future_fixer: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = FixerClient(session, str(future_fixer.make_url("")), "key", max_clock_skew=SKEW)
        with pytest.raises(PermanentProviderError, match="implausible publication time"):
            await client.fetch_latest()


def test_rate_revoked_round_trips_and_shares_the_rates_topic_and_key() -> None:
    rate = fetched(T0)
    event = RateRevoked.for_rate(
        rate_id=rate.rate_id, base_currency="EUR", target_currency="USD", reason="typo", revoked_by="ops", at=T0
    )
    assert event.TOPIC == RateFetched.TOPIC and event.key() == rate.key() == b"EUR:USD"
    assert decode(event.to_json(), expected=(RateFetched, RateRevoked)) == event
    again = RateRevoked.for_rate(
        rate_id=rate.rate_id, base_currency="EUR", target_currency="USD", reason="other", revoked_by="x", at=T0
    )
    assert again.event_id == event.event_id  # one revocation per rate
    with pytest.raises(UndecodableEvent) as caught:
        decode(event.to_json(), expected=RateFetched)
    assert caught.value.reason == "unexpected_event_type"
    payload = json.loads(event.to_json())
    payload["reason"] = ""
    with pytest.raises(UndecodableEvent):
        decode(json.dumps(payload).encode(), expected=(RateFetched, RateRevoked))
