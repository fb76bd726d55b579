"""Publishing events with aiokafka: acknowledged publishing (services) and bulk publishing (tools, backfill)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.partitioner import KeyPartitioner
from ces.events.base import Event
from ces.events.canonical_writer import ConversionAuditedWriter
from ces.events.conversions import ConversionAudited, ConversionRequested
from ces.events.signing import SIGNATURE_HEADER, RequestSigner
from ces.services.ports import REPUBLISHED_HEADER

Headers = list[tuple[str, bytes]]


class Sender(Protocol):
    """What publishers need of a producer: `AIOKafkaProducer` itself, or the worker's `FaustSender`."""

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future[Any]: ...


class BatchSender(Sender, Protocol):
    """A `Sender` that also takes a whole batch's messages in one call (the worker's `FaustSender`)."""

    async def send_many(self, messages: Sequence[Message]) -> list[asyncio.Future[Any]]: ...


# (topic, value, key, headers): one message as `BatchSender.send_many` takes it.
Message = tuple[str, bytes, bytes | None, Headers | None]
_REPUBLISHED: Headers = [(REPUBLISHED_HEADER, b"1")]


# Batches sent and not yet acknowledged before `publish_encoded` waits (memory: this many batches at most).
_IN_FLIGHT = 64


class BulkPublisher:
    """Sends whole record batches, one per partition at a time; `flush` waits until the broker acknowledged
    everything.

    Per message, `AIOKafkaProducer.send` costs a future, a partitioner call and an accumulator lookup (about
    25 us, the backfill's largest cost after building the events); here a message is one append to its
    partition's open batch, and a full batch is handed to the producer whole (`send_batch`). Partitions
    are chosen by the producer's own default partitioner (murmur2 of the key), so a pair lands on the
    partition a live fetch's `send` picks, and batches of a partition go out in order, so do its messages.
    """

    def __init__(self, producer: AIOKafkaProducer, topic_prefix: str = "") -> None:
        self.producer = producer
        self.topic_prefix = topic_prefix
        self._pending: list[asyncio.Future[object]] = []
        self._open: dict[tuple[str, int], Any] = {}  # (topic, partition) -> BatchBuilder being filled
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._partitioner = KeyPartitioner()
        self.sent = 0

    async def publish(self, events: Iterable[Event]) -> None:
        by_topic: dict[str, list[tuple[bytes, bytes]]] = {}
        for event in events:
            by_topic.setdefault(event.TOPIC, []).append((event.key(), event.to_json()))
        for topic, messages in by_topic.items():
            await self.publish_encoded(topic, messages)

    async def publish_encoded(self, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> None:
        """Publish already serialised `(key, value)` messages of one topic (its name without the prefix)."""
        name = self.topic_prefix + topic
        partitions = self._partitions.get(name)
        if partitions is None:
            # `list` of the same set, as `send` orders it: the same partition for the same key.
            partitions = self._partitions[name] = list(await self.producer.partitions_for(name))
        for key, value in messages:
            partition = self._partition_of.get((name, key))
            if partition is None:
                partition = self._partitioner(key, partitions, partitions)
                self._partition_of[(name, key)] = partition
            batch = self._open.get((name, partition))
            if batch is None:
                batch = self._open[(name, partition)] = self.producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start the next
                await self._send(name, partition)
                batch = self._open[(name, partition)] = self.producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a message of {len(value)} bytes does not fit in a batch")
            self.sent += 1
        if len(self._pending) >= _IN_FLIGHT:
            # Wait for the oldest half only: the rest stays in flight while the caller encodes the next
            # messages (waiting for all of them stopped the encoding for as long as the broker took).
            oldest, self._pending = self._pending[: _IN_FLIGHT // 2], self._pending[_IN_FLIGHT // 2 :]
            await asyncio.gather(*oldest)

    async def _send(self, topic: str, partition: int) -> None:
        batch = self._open.pop((topic, partition))
        batch.close()
        self._pending.append(await self.producer.send_batch(batch, topic, partition=partition))

    async def _wait(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def flush(self) -> None:
        for topic, partition in list(self._open):
            await self._send(topic, partition)
        await self._wait()


class AckedPublisher:
    """`publish` returns once its own events are acknowledged (so concurrent callers never wait on each other).

    With a `signer` (the gateway), every conversion request goes out with its signature header
    (`ces.events.signing`): the worker believes its `requested_by` only then."""

    def __init__(self, producer: Sender, topic_prefix: str = "", *, signer: RequestSigner | None = None) -> None:
        self.producer = producer
        self.topic_prefix = topic_prefix
        self.signer = signer
        self._audits = ConversionAuditedWriter()  # the worker's results: written without the model's serializer

    async def publish(self, events: Iterable[Event], *, republished: bool = False) -> None:
        headers = [(REPUBLISHED_HEADER, b"1")] if republished else None
        futures = []
        for event in events:
            value = self._audits.write(event) if type(event) is ConversionAudited else event.to_json()
            sent_headers = headers
            if self.signer is not None and isinstance(event, ConversionRequested):
                sent_headers = [*(headers or ()), (SIGNATURE_HEADER, self.signer.sign(value))]
            futures.append(
                await self.producer.send(self.topic_prefix + event.TOPIC, value, key=event.key(), headers=sent_headers)
            )
        if len(futures) == 1:
            await futures[0]  # the common case at light load, without gather's task and callbacks
        else:
            await asyncio.gather(*futures)


class ResultPublisher:
    """The worker's `EventPublisher`: a batch's results handed to the producer in one call, then acknowledged.

    `AckedPublisher` calls the sender once per event and gathers the acknowledgements; at light load a batch
    is one or two results, and per batch that was a Faust wrapper, a `maybe_start` check and a `gather`
    (a task and callbacks) on top of aiokafka's own `send`. Here the sender gets the batch's messages at
    once (`send_many`: aiokafka's `send` per message, each to its key's partition as before), and the
    acknowledgements are awaited in turn, which ends when the last is in, as `gather` did; a failed one
    raises (the batch is retried whole), and the others' outcomes are still collected."""

    def __init__(self, producer: BatchSender, topic_prefix: str = "") -> None:
        self.producer = producer
        self.topic_prefix = topic_prefix
        self._audits = ConversionAuditedWriter()  # written without the model's serializer

    async def publish(self, events: Iterable[Event], *, republished: bool = False) -> None:
        headers = _REPUBLISHED if republished else None
        prefix, write = self.topic_prefix, self._audits.write
        messages: list[Message] = [
            (prefix + e.TOPIC, write(e) if type(e) is ConversionAudited else e.to_json(), e.key(), headers)
            for e in events
        ]
        futures = await self.producer.send_many(messages)
        for n, future in enumerate(futures):
            try:
                await future
            except BaseException:
                for rest in futures[n + 1 :]:
                    rest.add_done_callback(_collect)
                raise


def _collect(future: asyncio.Future[Any]) -> None:
    """Retrieve a future's outcome, so an unawaited failure is not logged as never retrieved."""
    if not future.cancelled():
        future.exception()


def compression_type(codec: str) -> str | None:
    """`CES_KAFKA_COMPRESSION`'s value as aiokafka's `compression_type` ("none" is its None)."""
    return None if codec == "none" else codec


@asynccontextmanager
async def bulk_publisher(
    kafka: KafkaConnection, topic_prefix: str = "", *, compression: str = "none"
) -> AsyncIterator[BulkPublisher]:
    """`compression`: `CES_KAFKA_COMPRESSION` (none, gzip, lz4, zstd), applied per record batch."""
    producer = AIOKafkaProducer(
        **kafka.kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        compression_type=compression_type(compression),
    )
    await producer.start()
    try:
        publisher = BulkPublisher(producer, topic_prefix)
        yield publisher
        await publisher.flush()
    finally:
        await producer.stop()
