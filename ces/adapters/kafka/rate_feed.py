"""The gateway's reader of `rates-fetched`: new rates, from the end of the topic, into a `RateBroadcast`.

Like the reply router, it has no consumer group and commits nothing: every gateway instance reads every
rate from the moment it starts (the gateway principal has READ on the topic, no group ACL). Anything that
is not a `RateFetched` (revocations, undecodable bytes) is skipped: this is a notification feed for
dashboards, the projection stays the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.tail import tail_from_now
from ces.events.rates import RateFetched
from ces.events.registry import UndecodableEvent, decode
from ces.projections.rate_rows import rate_of
from ces.services.live_rates import RateBroadcast

log = logging.getLogger(__name__)


class RateFeed:
    def __init__(self, kafka: KafkaConnection, topic: str, broadcast: RateBroadcast) -> None:
        self.kafka = kafka
        self.topic = topic
        self.broadcast = broadcast
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, partitions_for: Callable[[str], Awaitable[set[int]]]) -> None:
        """`partitions_for`: the producer's metadata lookup (it waits for the topic's metadata)."""
        partitions = [TopicPartition(self.topic, p) for p in sorted(await partitions_for(self.topic))]
        if not partitions:
            raise RuntimeError(f"topic {self.topic} not found; has `cesdev up` or a worker created it?")
        consumer = await tail_from_now(self.kafka, partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="rate-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            except Exception:
                log.exception("reading rates-fetched failed; retrying")
                await asyncio.sleep(1)
                continue
            rates = []
            for records in batches.values():
                for record in records:
                    try:
                        event = decode(record.value)  # None is refused with a reason
                    except UndecodableEvent:
                        continue
                    if isinstance(event, RateFetched):
                        rates.append(rate_of(event))
            self.broadcast.publish(rates)
