"""The rate projection's handler on fakes: what is dead-lettered, cached, raised, and in which order.

The SQL behind the `RateRows` port is tested against PostgreSQL in tests/integration/test_rate_projection.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ces.adapters.kafka.dead_letters import DeadLetters
from ces.domain.rates import Rate, Withdrawal
from ces.events.rates import RateFetched, RateRevoked
from ces.projections.rate_projection import RateEventHandler
from ces.projections.rate_rows import Projection, RateEvent, Refusal, rate_of
from ces.projections.rate_wire import RateRow, rate_of_row
from ces.services.ports import CacheUnavailable, Received
from tests.fakes import DeadLetterSink, FakeRateCache

T0 = datetime(2024, 3, 15, 16, tzinfo=UTC)


class FakeRateRows:
    """Projects every `RateFetched` as inserted and current, except the indexes told to refuse; revocations
    withdraw their rate with `fallback`. `error` makes it raise as a database would, before anything."""

    def __init__(
        self, *, refuse: dict[int, str] | None = None, fallback: Rate | None = None, error: Exception | None = None
    ) -> None:
        self.refuse = refuse or {}
        self.fallback = fallback
        self.error = error
        self.batches: list[list[RateEvent]] = []

    def project(self, events: Sequence[RateEvent]) -> Projection:
        self.batches.append(list(events))
        if self.error is not None:
            raise self.error
        result = Projection()
        for index, event in enumerate(events):
            if index in self.refuse:
                result.refused.append(Refusal(index, self.refuse[index], "refused by the fake"))
            elif isinstance(event, RateFetched | RateRow):
                rate = rate_of(event) if isinstance(event, RateFetched) else rate_of_row(event)
                result.inserted.append(rate.rate_id)
                result.current.append(rate)
            else:
                revoked = Rate(event.rate_id, event.base_currency, event.target_currency, Decimal(1), "ecb", T0, T0)
                result.revocations_inserted.append(event.rate_id)
                result.withdrawals.append(Withdrawal(revoked, self.fallback))
        return result


def fetched(target: str, value: str, days: int = 0) -> RateFetched:
    return RateFetched.for_quote(
        provider_name="ecb",
        base_currency="EUR",
        target_currency=target,
        rate_value=Decimal(value),
        published_at=T0 + timedelta(days=days),
        fetched_at=T0 + timedelta(days=days, minutes=5),
        fetch_id=uuid.uuid4(),
    )


def received(event: RateFetched | RateRevoked | bytes, offset: int) -> Received:
    value = event if isinstance(event, bytes) else event.to_json()
    return Received("rates-fetched", 0, offset, b"EUR:USD", value)


def handler(rows: FakeRateRows, cache: FakeRateCache | None) -> tuple[RateEventHandler, DeadLetterSink]:
    sink = DeadLetterSink()
    return RateEventHandler(rows, cache, DeadLetters(sink)), sink


async def test_rows_are_projected_and_cached_and_garbage_is_dead_lettered_in_offset_order() -> None:
    usd, jpy = fetched("USD", "1.0892"), fetched("JPY", "161.87")
    rows, cache = FakeRateRows(refuse={1: "conflicting_republication"}), FakeRateCache()
    handle, sink = handler(rows, cache)

    inserted = await handle.handle([received(usd, 10), received(b"\xff not json", 11), received(jpy, 12)])

    assert inserted == 1  # jpy is the projector's index 1 (the garbage never reached it) and was refused
    assert [len(b) for b in rows.batches] == [2]
    assert await cache.get_many([("EUR", "USD"), ("EUR", "JPY")]) == [rate_of(usd), None]
    assert sink.reasons == ["invalid_json", "conflicting_republication"]
    assert [int(h["ces.dlq.source.offset"]) for _, _, h in sink.sent] == [11, 12]


async def test_a_database_error_propagates_before_anything_is_dead_lettered_or_cached() -> None:
    rows, cache = FakeRateRows(error=ConnectionError("database down")), FakeRateCache()
    handle, sink = handler(rows, cache)

    with pytest.raises(ConnectionError):
        await handle.handle([received(fetched("USD", "1.08"), 1), received(b"{}", 2)])
    assert sink.sent == []  # retried whole by the batch consumer: the garbage is dead-lettered once, later
    assert cache.entries == {}


async def test_a_cache_that_cannot_take_new_rows_does_not_fail_the_batch() -> None:
    rows = FakeRateRows()
    handle, sink = handler(rows, FakeRateCache(down=True))

    assert await handle.handle([received(fetched("USD", "1.08"), 1)]) == 1  # PostgreSQL stays authoritative
    assert sink.sent == []


async def test_a_revocation_the_cache_cannot_take_fails_the_batch_so_it_is_retried() -> None:
    usd = fetched("USD", "1.09", days=1)
    revoked = RateRevoked.for_rate(
        rate_id=usd.rate_id, base_currency="EUR", target_currency="USD", reason="wrong", revoked_by="ops", at=T0
    )
    handle, sink = handler(FakeRateRows(), FakeRateCache(down=True))

    with pytest.raises(CacheUnavailable):
        await handle.handle([received(revoked, 1)])
    assert sink.sent == []


async def test_a_revocation_replaces_the_cached_rate_with_its_fallback() -> None:
    old, new = fetched("USD", "1.08"), fetched("USD", "1.09", days=1)
    cache = FakeRateCache()
    await cache.put_many([rate_of(new)])
    revoked = RateRevoked.for_rate(
        rate_id=new.rate_id, base_currency="EUR", target_currency="USD", reason="wrong", revoked_by="ops", at=T0
    )
    handle, _ = handler(FakeRateRows(fallback=rate_of(old)), cache)

    await handle.handle([received(revoked, 1)])

    assert await cache.get_many([("EUR", "USD")]) == [rate_of(old)]
