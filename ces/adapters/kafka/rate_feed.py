"""The gateway's reader of `rates-fetched`: new rates, from the end of the topic, into a `RateBroadcast`.

Like the reply router, it has no consumer group and commits nothing: every gateway instance reads every
rate from the moment it starts (the gateway principal has READ on the topic, no group ACL). Anything that
is not a `RateFetched` (revocations, undecodable bytes) is skipped: this is a notification feed for
dashboards, the projection stays the record.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.tail import TailReader
from ces.events.rates import RateFetched
from ces.events.registry import UndecodableEvent, decode
from ces.projections.rate_rows import rate_of
from ces.services.live_rates import RateBroadcast

log = logging.getLogger(__name__)


class RateFeed(TailReader):
    task_name = "rate-feed"

    def __init__(self, kafka: KafkaConnection, topic: str, broadcast: RateBroadcast) -> None:
        super().__init__(kafka)
        self.topic = topic
        self.broadcast = broadcast

    async def start(self, partitions_for: Callable[[str], Awaitable[set[int]]]) -> None:
        """`partitions_for`: the producer's metadata lookup (it waits for the topic's metadata)."""
        partitions = [TopicPartition(self.topic, p) for p in sorted(await partitions_for(self.topic))]
        if not partitions:
            raise RuntimeError(f"topic {self.topic} not found; has `cesdev up` or a worker created it?")
        await self.start_reading(partitions)

    def handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
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
