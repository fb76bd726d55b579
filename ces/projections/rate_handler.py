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
from ces.metrics import BATCH_SECONDS, CACHE_ERRORS, RATE_EVENTS, RATE_ROWS
from ces.projections.rates import RateProjector, rate_of

log = logging.getLogger(__name__)


class RateEventHandler:
    """Rows first, cache second: the cache only ever names rows that are committed.

    A database that is down fails the batch, which the batch consumer retries with backoff (nothing is
    acknowledged or lost); an event the database refuses on its own is dead-lettered and the rest of the
    batch goes on. A Redis
    failure is logged and counted: the cache is derived and `ces cache rebuild` refills it.
    """

    def __init__(self, projector: RateProjector, cache: RateCache | None, dead_letters: DeadLetters) -> None:
        self.projector = projector
        self.cache = cache
        self.dead_letters = dead_letters

    async def handle(self, batch: Sequence[Received]) -> int:
        started = time.perf_counter()
        events: list[tuple[Received, RateFetched]] = []
        poison: list[tuple[Received, str, str]] = []
        for message in batch:
            try:
                event = decode(message.value, expected=RateFetched)
            except UndecodableEvent as exc:
                poison.append((message, exc.reason, exc.detail))
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
                    poison.append((message, "projection_refused", "the database refused the row"))
                else:
                    inserted += one
        RATE_ROWS.inc(inserted)
        await self._update_cache([e for _, e in events])
        # Dead letters go last: if the database is down the batch consumer retries the whole batch, and
        # nothing was dead-lettered twice.
        for message, reason, detail in sorted(poison, key=lambda p: (p[0].partition, p[0].offset)):
            await self.dead_letters.publish(message, reason, detail)
        BATCH_SECONDS.labels("rates").observe(time.perf_counter() - started)
        return inserted

    async def _project(self, events: list[RateFetched]) -> int | None:
        """Rows inserted, or None when the database refused the rows themselves (a constraint).

        An unavailable database (OperationalError) propagates: the batch consumer retries the batch.
        """
        try:
            return len(await asyncio.to_thread(self.projector.project, events))
        except OperationalError:
            raise
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
