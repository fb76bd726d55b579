"""The worker's result publisher: a batch's results in one `send_many` call, bytes as the models write them."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from ces.adapters.kafka.producer import Message, ResultPublisher
from ces.agents.app import FaustSender
from ces.services.ports import REPUBLISHED_HEADER
from tests.contracts.audit_store import audited, rejected


class RecordingBatchSender:
    """Acknowledges every message at once, or fails those whose key is in `failing`."""

    def __init__(self, failing: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[list[Message]] = []
        self.failing = failing

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Any:
        raise AssertionError("the result publisher sends a batch at once")

    async def send_many(self, messages: Sequence[Message]) -> list[asyncio.Future[Any]]:
        self.calls.append(list(messages))
        futures: list[asyncio.Future[Any]] = []
        for _, _, key, _ in messages:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            if key in self.failing:
                future.set_exception(RuntimeError(f"not acknowledged: {key!r}"))
            else:
                future.set_result(None)
            futures.append(future)
        return futures


async def test_a_batch_goes_out_in_one_call_with_the_models_bytes_keys_and_topics() -> None:
    rate = uuid.uuid4()
    events = [audited(uuid.uuid4(), [rate]), rejected(uuid.uuid4()), audited(uuid.uuid4(), [rate, uuid.uuid4()])]
    sender = RecordingBatchSender()
    await ResultPublisher(sender, "p-").publish(events)
    assert sender.calls == [[("p-" + e.TOPIC, e.to_json(), e.key(), None) for e in events]]
    assert [topic for topic, *_ in sender.calls[0]] == [
        "p-conversions-audited",
        "p-conversions-rejected",
        "p-conversions-audited",
    ]


async def test_republished_results_carry_the_header_and_fresh_ones_none() -> None:
    sender = RecordingBatchSender()
    publisher = ResultPublisher(sender, "")
    again = audited(uuid.uuid4(), [uuid.uuid4()])
    await publisher.publish([again], republished=True)
    await publisher.publish([again])
    (republished,), (fresh,) = sender.calls
    assert republished[3] == [(REPUBLISHED_HEADER, b"1")] and fresh[3] is None


async def test_an_unacknowledged_result_fails_the_publish_and_no_failure_goes_unretrieved() -> None:
    first, second, third = (audited(uuid.uuid4(), [uuid.uuid4()]) for _ in range(3))
    sender = RecordingBatchSender(failing={first.key(), third.key()})
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    try:
        with pytest.raises(RuntimeError, match="not acknowledged"):
            await ResultPublisher(sender, "").publish([first, second, third])
        await asyncio.sleep(0)  # the done callbacks run
        sender.calls.clear()
        gc.collect()
        assert unretrieved == []
    finally:
        loop.set_exception_handler(None)


class RecordingKafkaProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None) -> Any:
        self.sent.append((topic, value, key, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(len(self.sent))
        return future


class FaustProducerStub:
    def __init__(self) -> None:
        self.kafka = RecordingKafkaProducer()

    def _ensure_producer(self) -> RecordingKafkaProducer:
        return self.kafka


class FaustAppStub:
    def __init__(self) -> None:
        self.producer = FaustProducerStub()
        self.started = 0

    async def maybe_start_producer(self) -> FaustProducerStub:
        self.started += 1
        return self.producer


async def test_faust_sender_hands_each_message_to_aiokafka_in_order_and_starts_the_producer_once() -> None:
    app = FaustAppStub()
    sender = FaustSender(app)  # type: ignore[arg-type]
    messages: list[Message] = [("t", b"1", b"a", None), ("u", b"2", b"b", [("h", b"v")])]
    futures = await sender.send_many(messages)
    futures += await sender.send_many(messages[:1])
    assert [await f for f in futures] == [1, 2, 3]
    assert app.producer.kafka.sent == [*messages, messages[0]]
    assert app.started == 1
