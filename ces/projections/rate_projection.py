"""Handling a batch from `rates-fetched`: decode, project rows and revocations, dead-letter refusals, move the cache."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import cast

from ces.events.rates import RateFetched, RateRevoked
from ces.events.registry import UndecodableEvent, decode
from ces.metrics import BATCH_SECONDS, CACHE_ERRORS, RATE_EVENTS, RATE_REFUSED, RATE_REVOCATIONS, RATE_ROWS
from ces.projections.rate_rows import Projection, RateEvent, RateRows
from ces.projections.rate_wire import RateRow, read_row
from ces.services.ports import CacheUnavailable, DeadLetterSink, RateCache, Received

log = logging.getLogger(__name__)


class RateEventHandler:
    """Rows first, cache second: the cache only ever holds rows that are committed, with their stored values.

    Failure policy: the handler never decides that a database error means a bad message. Any database
    error propagates (nothing dead-lettered, nothing cached); the batch consumer classifies it: retry the
    whole batch (database unreachable, read-only, permission denied, missing table...) or re-handle the
    batch's messages one by one to isolate the one the database refuses. What the handler refuses itself
    is refused for a stable reason whatever the retries: undecodable bytes, an implausible publication
    time, a conflicting republication, a revocation of an unknown rate (`RateProjector`). Those are
    dead-lettered, counted, and the rest of the batch goes on. A Redis failure to take new rows is
    logged and counted (the cache is derived and `ces cache rebuild` refills it); a Redis failure to
    take a revocation fails the batch, so the revocation reaches the cache as soon as Redis answers.
    """

    def __init__(self, projector: RateRows, cache: RateCache | None, dead_letters: DeadLetterSink) -> None:
        self.projector = projector
        self.cache = cache
        self.dead_letters = dead_letters

    async def handle(self, batch: Sequence[Received]) -> int:
        """Project the batch; returns how many `exchange_rate` rows it inserted."""
        started = time.perf_counter()
        # A `RateFetched` as CES writes it goes straight to its row; anything else is decoded in full.
        rows = [read_row(message.value) for message in batch]
        messages: Sequence[Received]
        events: list[RateEvent]
        poison: list[tuple[Received, str, str]]
        if None in rows:
            messages, events, fetched, poison = _decoded(batch, rows)
        else:  # every message a canonical `RateFetched`: the usual batch
            messages, events, fetched, poison = batch, cast(list[RateEvent], rows), len(rows), []
        RATE_EVENTS.inc(fetched)
        # A database error propagates from here, before anything is dead-lettered or cached.
        result = await asyncio.to_thread(self.projector.project, events)
        RATE_ROWS.inc(len(result.inserted))
        RATE_REVOCATIONS.inc(len(result.revocations_inserted))
        for refusal in result.refused:
            RATE_REFUSED.labels(refusal.reason).inc()
            poison.append((messages[refusal.index], refusal.reason, refusal.detail))
        await self._update_cache(result)
        for message, reason, detail in sorted(poison, key=lambda p: (p[0].partition, p[0].offset)):
            await self.dead_letters.publish(message, reason, detail)
        BATCH_SECONDS.labels("rates").observe(time.perf_counter() - started)
        return len(result.inserted)

    async def _update_cache(self, result: Projection) -> None:
        if self.cache is None or not (result.current or result.withdrawals):
            return
        # Revocations first: the revoked-id set they maintain is what keeps a revoked rate out of the
        # cache should the same batch (or a later redelivery) offer it again. A revocation that cannot
        # reach Redis fails the batch (a transient failure, retried until Redis answers): a cache that
        # missed it would go on serving the withdrawn rate once Redis is back. The rows are already
        # committed, and projecting them again is a no-op.
        for withdrawal in result.withdrawals:
            try:
                await self.cache.revoke(withdrawal.revoked, withdrawal.replacement)
            except CacheUnavailable:
                CACHE_ERRORS.labels("revoke").inc()
                raise
        if not result.current:
            return
        try:
            await self.cache.put_newest(result.current.newest_first())
        except CacheUnavailable as exc:
            CACHE_ERRORS.labels("put").inc()
            log.warning("rate cache update failed (%s); PostgreSQL stays authoritative", exc)


def _decoded(
    batch: Sequence[Received], rows: list[RateRow | None]
) -> tuple[list[Received], list[RateEvent], int, list[tuple[Received, str, str]]]:
    """The messages and events of a batch some of whose messages `read_row` declined, those decoded in full;
    how many are `RateFetched`; the undecodable with their reasons."""
    messages: list[Received] = []
    events: list[RateEvent] = []
    poison: list[tuple[Received, str, str]] = []
    fetched = 0
    for message, row in zip(batch, rows, strict=True):
        event: RateEvent
        if row is None:
            try:
                decoded = decode(message.value, expected=(RateFetched, RateRevoked))
            except UndecodableEvent as exc:
                poison.append((message, exc.reason, exc.detail))
                continue
            assert isinstance(decoded, RateFetched | RateRevoked)
            event = decoded
        else:
            event = row
        fetched += not isinstance(event, RateRevoked)
        messages.append(message)
        events.append(event)
    return messages, events, fetched, poison
