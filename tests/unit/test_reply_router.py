"""The gateway's result reader survives any bytes on the decision topics and resolves only real results."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.replies import ReplyRouter
from ces.events.conversions import ConversionRejected
from ces.services.ports import REPUBLISHED_HEADER, TooManyPending

NASTY: list[bytes | None] = [
    None,  # a tombstone
    b"",
    b"\xff\xfe",
    b"[" * 5000 + b"]" * 5000,
    b'{"event_type": "ConversionRejected", "request_id": ' + b"9" * 5000 + b"}",
    b'{"event_type": "ConversionAudited", "schema_version": 99}',
    b'{"event_type": "RateFetched"}',
]


@pytest.mark.parametrize("value", NASTY)
async def test_garbage_for_a_waiting_request_is_skipped_and_the_real_result_still_resolves(value: bytes | None) -> None:
    router = ReplyRouter(KafkaConnection("127.0.0.1:9"), ["results"], max_pending=10)
    request_id = uuid.uuid4()
    waiter = router.expect(request_id)
    router._route(str(request_id).encode(), value)
    router._route(b"\xff" * 100, value)
    assert not waiter.done()

    result = ConversionRejected(request_id=request_id, reason="no_rate", message="none", rejected_at=datetime.now(UTC))
    router._route(str(request_id).encode(), result.to_json())
    assert waiter.done() and waiter.result() == (result, False)


async def test_the_republished_header_marks_the_result_as_a_replay() -> None:
    router = ReplyRouter("127.0.0.1:9", ["results"], max_pending=10)
    fresh, repeated = uuid.uuid4(), uuid.uuid4()
    waiters = {rid: router.expect(rid) for rid in (fresh, repeated)}
    results = {
        rid: ConversionRejected(request_id=rid, reason="no_rate", message="none", rejected_at=datetime.now(UTC))
        for rid in (fresh, repeated)
    }
    router._route(str(fresh).encode(), results[fresh].to_json(), [("other", b"x")])
    router._route(str(repeated).encode(), results[repeated].to_json(), [(REPUBLISHED_HEADER, b"1")])
    assert waiters[fresh].result() == (results[fresh], False)
    assert waiters[repeated].result() == (results[repeated], True)


def rejection(request_id: uuid.UUID) -> bytes:
    return ConversionRejected(
        request_id=request_id, reason="no_rate", message="none", rejected_at=datetime.now(UTC)
    ).to_json()


async def test_expect_many_is_all_or_nothing_and_room_follows_resolved_and_forgotten_waiters() -> None:
    router = ReplyRouter(KafkaConnection("127.0.0.1:9"), ["results"], max_pending=5)
    ids = [uuid.uuid4() for _ in range(4)]
    futures = router.expect_many(ids)
    assert (router.pending, router.room) == (4, 1)
    with pytest.raises(TooManyPending):
        router.expect_many([uuid.uuid4(), uuid.uuid4()])
    assert router.pending == 4  # the refused ones took nothing
    router._route(str(ids[0]).encode(), rejection(ids[0]))
    router.forget(ids[0], futures[0])  # after its result: no double count
    router.forget(ids[1], futures[1])
    router.forget(ids[1], futures[1])  # twice: still one
    assert (router.pending, router.room) == (2, 3)
    shared = router.expect_many([ids[2]])  # a second waiter for the same id
    router._route(str(ids[2]).encode(), rejection(ids[2]))
    assert futures[2].done() and shared[0].done() and router.pending == 1


async def test_wait_for_room_returns_once_a_waiter_is_released() -> None:
    router = ReplyRouter(KafkaConnection("127.0.0.1:9"), ["results"], max_pending=1)
    request_id = uuid.uuid4()
    router.expect(request_id)
    waiting = asyncio.create_task(router.wait_for_room())
    await asyncio.sleep(0)  # let it start waiting (ordering, not timing)
    assert not waiting.done()
    router._route(str(request_id).encode(), rejection(request_id))
    await asyncio.wait_for(waiting, timeout=5)
    assert router.room == 1


class _FakeConsumer:
    """What `TailReader` uses of a started consumer: `getmany` (one batch, then nothing) and `stop`."""

    def __init__(self, partitions: list[TopicPartition], batch: dict[TopicPartition, list[object]]) -> None:
        self.partitions = partitions
        self.batch = batch
        self.stopped = False

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[object]]:
        batch, self.batch = self.batch, {}
        if not batch:
            await asyncio.sleep(3600)  # a long-poll with nothing to read; cancelled by stop
        return batch

    async def stop(self) -> None:
        self.stopped = True


async def test_each_result_topic_is_read_by_a_consumer_of_its_own_and_either_resolves_a_waiter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer per topic (a fetch names only its topic's partitions), all feeding the same waiters; the
    router is healthy while every reader runs, and stopping it stops them all."""
    from types import SimpleNamespace

    from ces.adapters.kafka import tail

    request_id = uuid.uuid4()
    rejected = ConversionRejected(
        request_id=request_id, reason="no_rate", message="none", rejected_at=datetime.now(UTC)
    )
    record = SimpleNamespace(key=str(request_id).encode(), value=rejected.to_json(), headers=[])
    consumers: list[_FakeConsumer] = []

    async def fake_tail(kafka: KafkaConnection, partitions: list[TopicPartition]) -> _FakeConsumer:
        on_rejected = [p for p in partitions if p.topic == "rejected"]
        consumer = _FakeConsumer(partitions, {on_rejected[0]: [record]} if on_rejected else {})
        consumers.append(consumer)
        return consumer

    monkeypatch.setattr(tail, "tail_from_now", fake_tail)

    async def partitions_for(topic: str) -> set[int]:
        return {0, 1, 2}

    router = ReplyRouter(KafkaConnection("127.0.0.1:9"), ["audited", "rejected"], max_pending=10)
    waiter = router.expect(request_id)  # before start: the rejected topic's first batch resolves it
    await router.start(partitions_for)
    assert [sorted({p.topic for p in c.partitions}) for c in consumers] == [["audited"], ["rejected"]]
    assert all(len(c.partitions) == 3 for c in consumers)
    assert await asyncio.wait_for(waiter, 5) == (rejected, False)
    assert router.healthy

    await router.stop()
    assert all(c.stopped for c in consumers)
    assert not router.healthy
