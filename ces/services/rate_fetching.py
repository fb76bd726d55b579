"""Fetching rates from the configured provider: retries with backoff, then events to publish.

One fetch per interval cluster-wide: before fetching, the caller claims the provider's lease for the
interval (`FetchLease.claim`, a row in PostgreSQL, see `ces.adapters.postgres.fetch_lease`); a second tick around
a rebalance finds it taken. If the lease cannot be claimed (PostgreSQL down) the tick is skipped and the
next tick tries again: no stream of provider calls. A fetch that fails (retries exhausted, or an
exception) shortens its lease to `retry_seconds`, so the next try comes within the interval, not an
interval later. Should two fetches happen anyway, they are harmless: a publication always maps to the
same `rate_id` and event id (see `ces.events.rates.rate_id_for`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from uuid import UUID, uuid4

from ces.events.base import Event, utc_now, without_query_strings
from ces.events.rates import RateFetched, RateFetchFailed
from ces.services.ports import EventPublisher
from ces.services.rate_providers import PermanentProviderError, ProviderError, ProviderQuote, RateProvider
from ces.services.retry import RetryPolicy

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class FetchLease(Protocol):
    async def claim(self, provider: str, holder: UUID, seconds: float) -> bool:
        """Take the provider's lease for `seconds` unless another holder's lease is still running."""

    async def expire_in(self, provider: str, holder: UUID, seconds: float) -> None:
        """Move the end of our own lease to `seconds` from now."""


@dataclass
class FetchOutcome:
    provider: str
    fetch_id: UUID
    events: list[Event]
    attempts: int
    delays: list[float] = field(default_factory=list)
    skipped: bool = False

    @property
    def failed(self) -> bool:
        return any(isinstance(e, RateFetchFailed) for e in self.events)


def quote_events(quote: ProviderQuote, fetch_id: UUID, fetched_at: datetime) -> list[RateFetched]:
    return [
        RateFetched.for_quote(
            provider_name=quote.provider_name,
            base_currency=quote.base_currency,
            target_currency=target,
            rate_value=value,
            published_at=quote.published_at,
            fetched_at=fetched_at,
            fetch_id=fetch_id,
        )
        for target, value in sorted(quote.rates.items())
        if target != quote.base_currency and value > 0
    ]


async def fetch_once(
    provider: RateProvider,
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    fetch_id: UUID | None = None,
) -> FetchOutcome:
    """Fetch with retries; the outcome's events are the `RateFetched`s, or one `RateFetchFailed`."""
    fetch_id = fetch_id or uuid4()
    delays: list[float] = []
    pending = policy.delays()
    attempts = 0
    while True:
        attempts += 1
        try:
            quote = await provider.fetch_latest()
        except PermanentProviderError as exc:
            log.error("rate fetch from %s failed, not retrying: %s", provider.name, exc)
            return _failed(provider.name, fetch_id, attempts, delays, exc, retryable=False)
        except ProviderError as exc:
            delay = next(pending, None)
            if delay is None:
                log.error("rate fetch from %s failed after %d attempts: %s", provider.name, attempts, exc)
                return _failed(provider.name, fetch_id, attempts, delays, exc, retryable=True)
            log.warning(
                "rate fetch from %s attempt %d failed (%s); retrying in %.2fs",
                provider.name,
                attempts,
                exc,
                delay,
            )
            delays.append(delay)
            await sleep(delay)
            continue
        events: list[Event] = list(quote_events(quote, fetch_id, utc_now()))
        log.info(
            "fetched %d rates from %s published %s (attempt %d)",
            len(events),
            provider.name,
            quote.published_at.isoformat(),
            attempts,
        )
        return FetchOutcome(provider.name, fetch_id, events, attempts, delays)


def _failed(
    provider: str, fetch_id: UUID, attempts: int, delays: list[float], exc: Exception, *, retryable: bool
) -> FetchOutcome:
    event = RateFetchFailed(
        provider_name=provider,
        fetch_id=fetch_id,
        attempts=attempts,
        retry_delays_ms=[round(d * 1000) for d in delays],
        last_error=without_query_strings(f"{type(exc).__name__}: {exc}")[:1000],
        retryable=retryable,
        failed_at=utc_now(),
    )
    return FetchOutcome(provider, fetch_id, [event], attempts, delays)


class RateFetcher:
    """What the timer calls on every tick."""

    def __init__(
        self,
        provider_factory: Callable[[], Awaitable[tuple[RateProvider, Callable[[], Awaitable[None]]]]],
        publisher: EventPublisher,
        lease: FetchLease,
        policy: RetryPolicy,
        interval_seconds: float,
        *,
        retry_seconds: float = 60.0,
        on_outcome: Callable[[FetchOutcome], None] | None = None,
    ) -> None:
        self.provider_factory = provider_factory
        self.publisher = publisher
        self.lease = lease
        self.policy = policy
        self.interval_seconds = interval_seconds
        self.retry_seconds = min(retry_seconds, interval_seconds)
        self.on_outcome = on_outcome

    async def tick(self, provider_name: str) -> FetchOutcome | None:
        fetch_id = uuid4()
        # A little shorter than the interval so the lease is free again when the next tick is due.
        hold = max(0.001, self.interval_seconds - 0.5)
        try:
            claimed = await self.lease.claim(provider_name, fetch_id, hold)
        except Exception as exc:
            log.warning("fetch lease unavailable (%s: %s); skipping this tick", type(exc).__name__, exc)
            return None
        if not claimed:
            return None
        try:
            provider, close = await self.provider_factory()
            try:
                outcome = await fetch_once(provider, self.policy, fetch_id=fetch_id)
            finally:
                await close()
            await self.publisher.publish(outcome.events)
        except BaseException:
            await self._retry_soon(provider_name, fetch_id)
            raise
        if outcome.failed:
            await self._retry_soon(provider_name, fetch_id)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    async def _retry_soon(self, provider_name: str, fetch_id: UUID) -> None:
        try:
            await self.lease.expire_in(provider_name, fetch_id, self.retry_seconds)
        except Exception as exc:  # the lease then simply runs its whole interval
            log.warning("could not shorten the fetch lease (%s); next fetch at the next interval", exc)
