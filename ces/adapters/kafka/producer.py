"""Publishing events with aiokafka: acknowledged publishing (services) and bulk publishing (tools, backfill)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from ces.adapters.kafka.connection import KafkaConnection
from ces.events.base import Event
from ces.events.conversions import ConversionRequested
from ces.events.signing import SIGNATURE_HEADER, RequestSigner
from ces.services.ports import REPUBLISHED_HEADER

Headers = list[tuple[str, bytes]]


class Sender(Protocol):
    """What publishers need of a producer: `AIOKafkaProducer` itself, or the worker's `FaustSender`."""

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future[Any]: ...


class BulkPublisher:
    """Sends without waiting per message; `flush` waits until the broker acknowledged everything."""

    def __init__(self, producer: AIOKafkaProducer, topic_prefix: str = "") -> None:
        self.producer = producer
        self.topic_prefix = topic_prefix
        self._pending: list[asyncio.Future[object]] = []
        self.sent = 0

    async def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            fut = await self.producer.send(self.topic_prefix + event.TOPIC, event.to_json(), key=event.key())
            self._pending.append(fut)
            self.sent += 1
        if len(self._pending) >= 10_000:
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)


class AckedPublisher:
    """`publish` returns once its own events are acknowledged (so concurrent callers never wait on each other).

    With a `signer` (the gateway), every conversion request goes out with its signature header
    (`ces.events.signing`): the worker believes its `requested_by` only then."""

    def __init__(self, producer: Sender, topic_prefix: str = "", *, signer: RequestSigner | None = None) -> None:
        self.producer = producer
        self.topic_prefix = topic_prefix
        self.signer = signer

    async def publish(self, events: Iterable[Event], *, republished: bool = False) -> None:
        headers = [(REPUBLISHED_HEADER, b"1")] if republished else None
        futures = []
        for event in events:
            value = event.to_json()
            sent_headers = headers
            if self.signer is not None and isinstance(event, ConversionRequested):
                sent_headers = [*(headers or ()), (SIGNATURE_HEADER, self.signer.sign(value))]
            futures.append(
                await self.producer.send(self.topic_prefix + event.TOPIC, value, key=event.key(), headers=sent_headers)
            )
        await asyncio.gather(*futures)


@asynccontextmanager
async def bulk_publisher(kafka: KafkaConnection, topic_prefix: str = "") -> AsyncIterator[BulkPublisher]:
    producer = AIOKafkaProducer(
        **kafka.kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        publisher = BulkPublisher(producer, topic_prefix)
        yield publisher
        await publisher.flush()
    finally:
        await producer.stop()
