"""Handling a batch from `rates-fetched`: decode, dead-letter the poison, project rows, move the cache."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError

from ces.adapters.rate_cache import RateCache
from ces.agents.dead_letters import DeadLetters, Received
from ces.events.rates import RateFetched
from ces.events.registry import UndecodableEvent, decode
from ces.metrics import BATCH_SECONDS, CACHE_ERRORS, PROJECTION_RETRIES, RATE_EVENTS, RATE_ROWS
from ces.projections.rates import RateProjector, rate_of

log = logging.getLogger(__name__)


class RateEventHandler:
    """Rows first, cache second: the cache only ever names rows that are committed.

    A database that is down blocks the batch (retried with backoff, nothing acknowledged is lost); an
    event the database refuses on its own is dead-lettered and the rest of the batch goes on. A Redis
    failure is logged and counted: the cache is derived and `ces cache rebuild` refills it.
    """

    def __init__(
        self, projector: RateProjector, cache: RateCache | None, dead_letters: DeadLetters, *, max_backoff: float = 5.0
    ) -> None:
        self.projector = projector
        self.cache = cache
        self.dead_letters = dead_letters
        self.max_backoff = max_backoff

    async def handle(self, batch: Sequence[Received]) -> int:
        started = time.perf_counter()
        events: list[tuple[Received, RateFetched]] = []
        for message in batch:
            try:
                event = decode(message.value, expected=RateFetched)
            except UndecodableEvent as exc:
                await self.dead_letters.publish(message, exc.reason, exc.detail)
                continue
            assert isinstance(event, RateFetched)
            events.append((message, event))
        RATE_EVENTS.inc(len(events))
        inserted = await self._project([e for _, e in events])
        if inserted is None:  # the batch as a whole was refused: find the culprits one by one
            inserted = 0
            for message, event in events:
                one = await self._project([event])
                if one is None:
                    await self.dead_letters.publish(message, "projection_refused", "the database refused the row")
                else:
                    inserted += one
        RATE_ROWS.inc(inserted)
        await self._update_cache([e for _, e in events])
        BATCH_SECONDS.labels("rates").observe(time.perf_counter() - started)
        return inserted

    async def _project(self, events: list[RateFetched]) -> int | None:
        delay = 0.1
        while True:
            try:
                return len(await asyncio.to_thread(self.projector.project, events))
            except OperationalError as exc:
                PROJECTION_RETRIES.inc()
                log.warning("database unavailable (%s); retrying the batch in %.1fs", exc.orig, delay)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
            except DBAPIError as exc:
                log.error("database refused %d rate rows: %s", len(events), exc.orig)
                return None

    async def _update_cache(self, events: list[RateFetched]) -> None:
        if self.cache is None or not events:
            return
        try:
            await self.cache.put_many(rate_of(e) for e in events)
        except (RedisError, OSError) as exc:
            CACHE_ERRORS.labels("put").inc()
            log.warning("rate cache update failed (%s); PostgreSQL stays authoritative", exc)
