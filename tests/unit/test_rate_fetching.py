"""Fetching with retries, against a scripted fake provider (no network: the e2e tests use the real one)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from ces.agents.rates import tick_once
from ces.events.rates import RateFetched, RateFetchFailed
from ces.services.rate_fetching import RateFetcher, fetch_once
from ces.services.rate_providers import PermanentProviderError, ProviderError, ProviderQuote, TransientProviderError
from ces.services.retry import RetryPolicy

QUOTE = ProviderQuote(
    "fake", "EUR", datetime(2024, 3, 15, 15, tzinfo=UTC), {"USD": Decimal("1.0892"), "JPY": Decimal("161.87")}
)


class ScriptedProvider:
    name = "fake"

    def __init__(self, *outcomes: Exception | ProviderQuote) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def fetch_latest(self) -> ProviderQuote:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def fetch_history(self, start: date, end: date) -> AsyncIterator[ProviderQuote]:
        yield QUOTE


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def test_backoff_grows_and_stays_within_bounds() -> None:
    policy = RetryPolicy(max_attempts=6, initial_delay=1.0, max_delay=5.0, max_total=100.0, jitter=0.2)
    low, high = list(policy.delays(lambda: 0.0)), list(policy.delays(lambda: 1.0))
    assert low == pytest.approx([0.8, 1.6, 3.2, 4.0, 4.0])  # 1, 2, 4, then the cap of 5, all -20%
    assert high == pytest.approx([1.2, 2.4, 4.8, 6.0, 6.0])  # the same +20%
    assert high[0] < low[1] and high[1] < low[2]  # jitter never hides the growth
    assert list(RetryPolicy(max_attempts=10, initial_delay=10, max_total=25, jitter=0).delays()) == [10.0]


async def test_transient_errors_are_retried_then_the_quote_becomes_events() -> None:
    provider = ScriptedProvider(TransientProviderError("503"), TransientProviderError("timeout"), QUOTE)
    sleep = RecordingSleep()
    outcome = await fetch_once(provider, RetryPolicy(jitter=0), sleep=sleep)
    assert provider.calls == 3
    assert sleep.delays == [1.0, 2.0]
    assert not outcome.failed
    assert [e.target_currency for e in outcome.events if isinstance(e, RateFetched)] == ["JPY", "USD"]
    assert {e.fetch_id for e in outcome.events if isinstance(e, RateFetched)} == {outcome.fetch_id}


async def test_exhausted_retries_give_one_rate_fetch_failed_with_the_delays() -> None:
    provider = ScriptedProvider(*[TransientProviderError(f"boom {i}") for i in range(3)])
    outcome = await fetch_once(provider, RetryPolicy(max_attempts=3, jitter=0), sleep=RecordingSleep())
    (event,) = outcome.events
    assert isinstance(event, RateFetchFailed)
    assert event.attempts == 3 and event.retry_delays_ms == [1000, 2000]
    assert event.retryable and "boom 2" in event.last_error


async def test_permanent_errors_are_not_retried() -> None:
    provider = ScriptedProvider(PermanentProviderError("401 invalid_access_key"), QUOTE)
    sleep = RecordingSleep()
    outcome = await fetch_once(provider, RetryPolicy(), sleep=sleep)
    (event,) = outcome.events
    assert isinstance(event, RateFetchFailed)
    assert provider.calls == 1 and sleep.delays == []
    assert not event.retryable and "invalid_access_key" in event.last_error


async def test_two_fetches_of_one_publication_have_the_same_ids() -> None:
    first = await fetch_once(ScriptedProvider(QUOTE), RetryPolicy(), sleep=RecordingSleep())
    second = await fetch_once(ScriptedProvider(QUOTE), RetryPolicy(), sleep=RecordingSleep())
    assert first.fetch_id != second.fetch_id
    ids = [(e.event_id, e.rate_id) for e in first.events if isinstance(e, RateFetched)]
    assert ids == [(e.event_id, e.rate_id) for e in second.events if isinstance(e, RateFetched)]


@pytest.mark.parametrize("value", [Decimal(0), Decimal("-1")])
async def test_non_positive_rates_are_not_published(value: Decimal) -> None:
    quote = ProviderQuote("fake", "EUR", QUOTE.published_at, {"USD": Decimal("1.1"), "XXX": value})
    outcome = await fetch_once(ScriptedProvider(quote), RetryPolicy(), sleep=RecordingSleep())
    assert [e.target_currency for e in outcome.events if isinstance(e, RateFetched)] == ["USD"]


class FakeLease:
    """The lease's contract in memory: one holder until expiry; `down` makes it raise like a dead database."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.holder: uuid.UUID | None = None
        self.seconds: float | None = None
        self.claims = 0

    async def claim(self, provider: str, holder: uuid.UUID, seconds: float) -> bool:
        self.claims += 1
        if self.down:
            raise ConnectionRefusedError("database down")
        if self.holder is not None:
            return False
        self.holder, self.seconds = holder, seconds
        return True

    async def expire_in(self, provider: str, holder: uuid.UUID, seconds: float) -> None:
        assert holder == self.holder
        self.seconds = seconds


class FakePublisher:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.published: list[object] = []

    async def publish(self, events: Sequence[object]) -> None:
        if self.error is not None:
            raise self.error
        self.published.extend(events)


def fetcher_with(
    provider: ScriptedProvider, lease: FakeLease, publisher: FakePublisher, interval: float = 3600
) -> RateFetcher:
    async def factory() -> tuple[ScriptedProvider, Callable[[], Awaitable[None]]]:
        async def close() -> None:
            return None

        return provider, close

    policy = RetryPolicy(max_attempts=2, initial_delay=0.0, max_delay=0.0)
    return RateFetcher(factory, publisher, lease, policy, interval, retry_seconds=60)  # type: ignore[arg-type]


async def test_a_tick_without_the_lease_store_skips_instead_of_fetching() -> None:
    provider, lease, publisher = ScriptedProvider(QUOTE), FakeLease(down=True), FakePublisher()
    fetcher = fetcher_with(provider, lease, publisher)
    assert await fetcher.tick("ecb") is None
    assert await fetcher.tick("ecb") is None
    assert provider.calls == 0 and publisher.published == []


async def test_one_fetch_per_lease_and_the_interval_minus_margin_is_held() -> None:
    provider, lease, publisher = ScriptedProvider(QUOTE, QUOTE), FakeLease(), FakePublisher()
    fetcher = fetcher_with(provider, lease, publisher)
    assert await fetcher.tick("ecb") is not None
    assert await fetcher.tick("ecb") is None  # a second tick (or a second leader) finds the lease taken
    assert provider.calls == 1 and lease.seconds == 3599.5


async def test_a_failed_fetch_shortens_the_lease_so_it_is_retried_within_the_interval() -> None:
    error = ProviderError("HTTP 500")
    provider, lease, publisher = ScriptedProvider(error, error), FakeLease(), FakePublisher()
    outcome = await fetcher_with(provider, lease, publisher).tick("ecb")
    assert outcome is not None and outcome.failed
    assert lease.seconds == 60
    assert [type(e).__name__ for e in publisher.published] == ["RateFetchFailed"]


async def test_an_exception_in_a_tick_shortens_the_lease_and_the_timer_goes_on() -> None:
    provider, lease = ScriptedProvider(QUOTE), FakeLease()
    fetcher = fetcher_with(provider, lease, FakePublisher(error=TimeoutError("publish timed out")))
    with pytest.raises(TimeoutError):
        await fetcher.tick("ecb")
    assert lease.seconds == 60

    before = REGISTRY.get_sample_value("ces_timer_errors_total", {"provider": "ecb"}) or 0
    lease.holder = None
    await tick_once(fetcher, "ecb")  # does not raise: an exception escaping a Faust timer stops the worker
    assert REGISTRY.get_sample_value("ces_timer_errors_total", {"provider": "ecb"}) == before + 1
