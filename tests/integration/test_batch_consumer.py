"""The batch consumer on a real broker: a failing batch is retried, nothing is skipped, offsets are
committed only for what was handled, and the next consumer of the group starts after them."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition

from ces.agents.batch_consumer import BatchConsumer
from ces.agents.dead_letters import Received
from ces.settings import Settings
from tests.integration.conftest import NewTopicFactory
from tests.support import produce


async def run_until(consumer: BatchConsumer, done: asyncio.Event, timeout: float = 60) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def committed_offsets(
    settings: Settings, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        return {tp: (await probe.committed(tp)) or 0 for tp in partitions}
    finally:
        await probe.stop()


async def test_failed_batches_are_retried_and_commits_follow_what_was_handled(
    settings: Settings, new_topic: NewTopicFactory, unique: str
) -> None:
    topic = await new_topic("batches", partitions=3)
    group = f"test-batches-{unique}"
    await produce(settings.kafka_bootstrap, topic, [(str(i).encode(), str(i).encode()) for i in range(600)])

    seen: list[int] = []
    failures = 0
    done = asyncio.Event()

    async def handle(batch: list[Received]) -> None:
        nonlocal failures
        if failures < 2:  # the database is "down" for the first two attempts
            failures += 1
            raise RuntimeError("database unavailable")
        seen.extend(int(r.value) for r in batch)
        if len(set(seen)) == 600:
            done.set()

    consumer = BatchConsumer(
        name="test", bootstrap=settings.kafka_bootstrap, topic=topic, group_id=group, handle=handle, max_records=50
    )
    partitions = [TopicPartition(topic, p) for p in range(3)]
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done.wait(), 60)
        # Commits follow handling: poll until the group's offsets reach the end of every partition.
        async with asyncio.timeout(30):
            while True:
                committed = await committed_offsets(settings, group, partitions)
                if sum(committed.values()) == 600:
                    break
                await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert failures == 2
    assert sorted(set(seen)) == list(range(600))  # nothing skipped despite the failures
    assert sum(committed.values()) == 600  # every partition committed up to its end, nothing beyond

    await produce(settings.kafka_bootstrap, topic, [(b"new", b"600")])
    later: list[int] = []
    done_later = asyncio.Event()

    async def handle_later(batch: list[Received]) -> None:
        later.extend(int(r.value) for r in batch)
        done_later.set()

    again = BatchConsumer(
        name="test", bootstrap=settings.kafka_bootstrap, topic=topic, group_id=group, handle=handle_later
    )
    await run_until(again, done_later)
    assert later == [600]
