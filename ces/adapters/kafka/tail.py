"""Reading topics from their current end, outside any consumer group: the gateway's reply and rate readers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ces.adapters.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)


async def tail_from_now(kafka: KafkaConnection, partitions: list[TopicPartition]) -> AIOKafkaConsumer:
    """A started consumer with `partitions` assigned (no group, no commits), positioned at their end offsets
    as of this call: a record appended after it returns is never missed."""
    consumer = AIOKafkaConsumer(**kafka.kwargs(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, not lazily at the first fetch
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


class TailReader:
    """One task reading `partitions` from now on and handing each fetched batch to `handle`; a failed fetch
    is logged and retried, so the reader only ends when stopped. Subclasses say what a batch means."""

    task_name = "tail-reader"

    def __init__(self, kafka: KafkaConnection) -> None:
        self.kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start_reading(self, partitions: list[TopicPartition]) -> None:
        self._consumer = await tail_from_now(self.kafka, partitions)
        self._task = asyncio.create_task(self._run(self._consumer), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def healthy(self) -> bool:
        """False once the reading task has ended (for the reply router: no waiter could be resolved any more)."""
        return self._task is not None and not self._task.done()

    def handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        raise NotImplementedError

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            except Exception:
                log.exception("%s: fetching failed; retrying", self.task_name)
                await asyncio.sleep(1)
                continue
            self.handle(batches)
