"""The batch consumer on a real broker: transient failures are retried with nothing skipped, a bad
message is isolated and dead-lettered while the rest of its batch is handled, offsets are committed only
for what was handled, and the next consumer of the group starts after them."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition

from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.kafka.dead_letters import DeadLetters, Headers
from ces.agents.batch_consumer import BatchConsumer
from ces.services.ports import Received
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


class CollectedDeadLetters(DeadLetters):
    """Dead letters kept in memory: what this test checks is the consumer's policy, not the DLQ topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        self.progress = asyncio.Event()

        async def send(key: bytes | None, value: bytes, headers: Headers) -> None:
            self.sent.append((key, value, dict(headers)))
            self.progress.set()

        super().__init__(send)


async def committed_offsets(
    settings: Settings, group: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    probe = AIOKafkaConsumer(**kafka_kwargs(settings.kafka_bootstrap), group_id=group, enable_auto_commit=False)
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
            raise ConnectionRefusedError("database unavailable")
        seen.extend(int(r.value) for r in batch)
        if len(set(seen)) == 600:
            done.set()

    dead = CollectedDeadLetters()
    consumer = BatchConsumer(
        name="test",
        kafka=KafkaConnection.from_settings(settings),
        topic=topic,
        group_id=group,
        handle=handle,
        dead_letters=dead,
        max_records=50,
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
    assert dead.sent == []  # a transient failure never dead-letters
    assert sum(committed.values()) == 600  # every partition committed up to its end, nothing beyond

    await produce(settings.kafka_bootstrap, topic, [(b"new", b"600")])
    later: list[int] = []
    done_later = asyncio.Event()

    async def handle_later(batch: list[Received]) -> None:
        later.extend(int(r.value) for r in batch)
        done_later.set()

    again = BatchConsumer(
        name="test",
        kafka=KafkaConnection.from_settings(settings),
        topic=topic,
        group_id=group,
        handle=handle_later,
        dead_letters=CollectedDeadLetters(),
    )
    await run_until(again, done_later)
    assert later == [600]


async def test_a_bad_message_is_isolated_and_dead_lettered_while_its_batch_goes_on(
    settings: Settings, new_topic: NewTopicFactory, unique: str
) -> None:
    """One message raises an unexpected error every time, another one is refused by the database: both
    end in the dead letters with their reason, every other message of the same batches is handled."""
    topic = await new_topic("isolate", partitions=2)
    group = f"test-isolate-{unique}"
    values = [str(i).encode() for i in range(400)]
    values[123] = b"bug"
    values[321] = b"refused"
    await produce(settings.kafka_bootstrap, topic, [(v, v) for v in values])

    handled: set[bytes] = set()
    bug_attempts = 0
    dead = CollectedDeadLetters()

    async def handle(batch: list[Received]) -> None:
        nonlocal bug_attempts
        if any(r.value == b"bug" for r in batch):
            if len(batch) == 1:
                bug_attempts += 1
            raise KeyError("a bug in the handler")
        if any(r.value == b"refused" for r in batch):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        handled.update(r.value for r in batch)
        dead.progress.set()

    consumer = BatchConsumer(
        name="test",
        kafka=KafkaConnection.from_settings(settings),
        topic=topic,
        group_id=group,
        handle=handle,
        dead_letters=dead,
        max_records=200,
        max_attempts=3,
    )
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(60):
            while len(handled) + len(dead.sent) < 400:
                await dead.progress.wait()
                dead.progress.clear()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert handled == {v for v in values if v not in (b"bug", b"refused")}
    reasons = {value: headers["ces.dlq.reason"] for _, value, headers in dead.sent}
    assert reasons == {b"bug": b"handler_error", b"refused": b"refused_by_database"}
    assert bug_attempts == 3  # retried a bounded number of times, then dead-lettered
    bug_headers = next(h for _, v, h in dead.sent if v == b"bug")
    assert b"KeyError" in bug_headers["ces.dlq.error"]


async def test_offsets_are_committed_together_and_a_stopped_consumer_commits_what_it_finished(
    settings: Settings, new_topic: NewTopicFactory, unique: str
) -> None:
    """Offsets wait for the commit interval (or an idle moment); stopping commits the finished batches
    and nothing of a batch still in flight."""
    topic = await new_topic("coalesced", partitions=1)
    group = f"test-coalesced-{unique}"
    await produce(settings.kafka_bootstrap, topic, [(b"k", str(i).encode()) for i in range(300)])
    finished: set[int] = set()
    blocked_from: list[int] = []
    never = asyncio.Event()
    only_last_left = asyncio.Event()  # every batch before the last one finished; the last one in flight

    def check() -> None:
        if blocked_from and len(finished) == blocked_from[0]:
            only_last_left.set()

    async def handle(batch: list[Received]) -> None:
        if any(r.offset == 299 for r in batch):  # the last batch stays in flight until the consumer stops
            blocked_from.append(batch[0].offset)
            check()
            await never.wait()
        finished.update(r.offset for r in batch)
        check()

    consumer = BatchConsumer(
        name="test",
        kafka=KafkaConnection.from_settings(settings),
        topic=topic,
        group_id=group,
        handle=handle,
        dead_letters=CollectedDeadLetters(),
        max_records=50,
        commit_interval=3600,  # nothing commits while a batch is in flight
    )
    partition = [TopicPartition(topic, 0)]
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(only_last_left.wait(), 60)
        assert blocked_from[0] > 0  # the records came in more than one batch
        assert await committed_offsets(settings, group, partition) == {partition[0]: 0}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert finished == set(range(blocked_from[0]))
    # Stopped: every finished batch committed, the one in flight not (it is redelivered).
    assert await committed_offsets(settings, group, partition) == {partition[0]: blocked_from[0]}
