"""The conversion handler: a batch of `conversion-requests` in, one recorded decision per request out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from decimal import Decimal

from ces.events.conversions import ConversionAudited
from ces.events.registry import UndecodableEvent
from ces.events.requests import ParsedRequest, parse_request
from ces.metrics import CONVERSION_BATCH_SIZE, CONVERSION_STAGE_SECONDS, CONVERSIONS
from ces.services.conversions import ConversionDecider
from ces.services.ports import DeadLetterSink, DecisionStore, EventPublisher, Received

log = logging.getLogger(__name__)


class ConversionHandler:
    """Decide, record (one transaction for the batch), then publish what stands.

    Recording before publishing is what makes the effect exactly-once: a request id decided before
    gets its stored decision re-published, identical, never a second conversion.
    """

    def __init__(
        self,
        decider: ConversionDecider,
        store: DecisionStore,
        publisher: EventPublisher,
        dead_letters: DeadLetterSink,
        *,
        max_amount: Decimal,
    ) -> None:
        self.decider = decider
        self.store = store
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.max_amount = max_amount

    async def handle(self, batch: Sequence[Received]) -> int:
        started = time.perf_counter()
        requests: dict[object, ParsedRequest] = {}
        poison: list[tuple[Received, UndecodableEvent]] = []
        for message in batch:
            try:
                parsed = parse_request(message.value, message.timestamp_ms, max_amount=self.max_amount)
            except UndecodableEvent as exc:
                poison.append((message, exc))
                continue
            requests.setdefault(parsed.request_id, parsed)  # in-batch duplicates: one decision, one result
        standing = []
        if requests:
            CONVERSION_BATCH_SIZE.observe(len(requests))
            started = _stage("parse", started)
            decisions = await self.decider.decide(list(requests.values()))
            started = _stage("decide", started)
            standing = await asyncio.to_thread(self.store.record, decisions)
            started = _stage("record", started)
            # A standing decision that is not the one just made (the store returns that very object) was
            # stored before, for a repeated request id: it goes out marked, so the gateway can say
            # "replayed" without reading the database.
            made = {d.request_id: d for d in decisions}
            fresh = [s for s in standing if s is made[s.request_id]]
            again = [s for s in standing if s is not made[s.request_id]]
            if fresh:
                await self.publisher.publish(fresh)
            if again:
                await self.publisher.publish(again, republished=True)
            _stage("publish", started)
        # Dead letters go last: a batch that fails earlier (database down) is retried whole by the batch
        # consumer, and nothing was dead-lettered twice.
        for message, error in poison:
            await self.dead_letters.publish(message, error.reason, error.detail)
        if not standing:
            return 0
        audited = sum(isinstance(d, ConversionAudited) for d in standing)
        CONVERSIONS.labels("audited").inc(audited)
        CONVERSIONS.labels("rejected").inc(len(standing) - audited)
        return len(standing)


def _stage(name: str, started: float) -> float:
    now = time.perf_counter()
    CONVERSION_STAGE_SECONDS.labels(name).observe(now - started)
    return now
