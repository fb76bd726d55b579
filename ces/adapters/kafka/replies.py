"""Request/reply over Kafka for the gateway: wait for the result of one request id.

Every gateway instance reads `conversions-audited` and `conversions-rejected` itself, from the end, with
manually assigned partitions (no consumer group, no commits), and resolves the waiters it has for the
request ids it sees; results for other instances' requests are skipped. This needs no reply topic, no
change to the worker and no coordination between instances, and any number of instances can run; the
cost is that each instance reads every result (measured in the gateway benchmark). The router starts
reading before the gateway accepts requests, so a result can never arrive before its waiter exists.

A result re-published for a repeated request id carries the `REPUBLISHED_HEADER`: the waiter learns that
the decision is a replay of an earlier one without a database read on the gateway's path. aiokafka's
fetch_max_wait_ms (500) stays: the broker answers a waiting fetch as soon as a result is appended, so a
shorter wait bought no latency and cost idle CPU (measured, docs/http.md).

Each result topic is read by a consumer of its own. aiokafka names every assigned partition in each fetch and
decodes every partition's entry of each answer in Python, so one consumer for both topics paid for the
rejected topic's (nearly always empty) partitions on every fetch that brought an audit; with its own consumer
an idle topic costs a long-poll every 500 ms, and a rejection is still answered as soon as it is appended
(3-8% of the gateway's CPU per request, docs/http.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from aiokafka import TopicPartition

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.tail import TailReader
from ces.events.conversions import ConversionAudited, ConversionRejected
from ces.events.registry import UndecodableEvent, decode
from ces.services.ports import REPUBLISHED_HEADER, Reply, TooManyPending

log = logging.getLogger(__name__)


class _TopicTail(TailReader):
    """One result topic, read from now on by its own consumer; its batches go to the router."""

    task_name = "reply-router"

    def __init__(self, kafka: KafkaConnection, handle: Callable[[dict[TopicPartition, list[Any]]], None]) -> None:
        super().__init__(kafka)
        self._handle = handle

    def handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        self._handle(batches)


class ReplyRouter:
    def __init__(self, kafka: KafkaConnection, topics: list[str], *, max_pending: int) -> None:
        self.kafka = kafka
        self.topics = topics
        self._tails: list[_TopicTail] = []
        self.max_pending = max_pending
        # By the result's Kafka key (`str(request_id)`, as `ConversionAudited.key()` writes it), so a result is
        # matched, or skipped as another instance's, by one lookup of its key bytes: no UUID parsed per record.
        self._waiters: dict[bytes, list[asyncio.Future[Reply]]] = {}
        # Kept as a count (not summed over the waiters): `expect` checks it on every request.
        self._pending = 0
        self._freed = asyncio.Event()
        self.seen = 0

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def room(self) -> int:
        """How many more waiters `expect_many` accepts now."""
        return max(0, self.max_pending - self._pending)

    async def start(self, partitions_for: Callable[[str], Awaitable[set[int]]]) -> None:
        """`partitions_for`: the producer's metadata lookup (it waits for the topic's metadata)."""
        by_topic = []
        for topic in self.topics:
            partitions = [TopicPartition(topic, p) for p in sorted(await partitions_for(topic))]
            if partitions:
                by_topic.append(partitions)
        if not by_topic:
            raise RuntimeError(f"result topics {self.topics} not found; has `cesdev up` or a worker created them?")
        # The end offsets are resolved before any request is accepted: no result can precede its waiter.
        try:
            for partitions in by_topic:
                tail = _TopicTail(self.kafka, self.handle)
                self._tails.append(tail)
                await tail.start_reading(partitions)
        except BaseException:
            await self._stop_tails()
            raise

    async def _stop_tails(self) -> None:
        tails, self._tails = self._tails, []
        for tail in tails:
            await tail.stop()

    async def stop(self) -> None:
        await self._stop_tails()
        for waiters in self._waiters.values():
            for fut in waiters:
                fut.cancel()

    @property
    def healthy(self) -> bool:
        """False once any topic's reading task has ended (its results could no longer resolve a waiter)."""
        return bool(self._tails) and all(tail.healthy for tail in self._tails)

    def expect(self, request_id: UUID) -> asyncio.Future[Reply]:
        """Register interest before publishing; await the future (with a timeout), then `forget`."""
        return self.expect_many([request_id])[0]

    def expect_many(self, request_ids: Sequence[UUID]) -> list[asyncio.Future[Reply]]:
        """`expect` for each id, all or none: `TooManyPending` if they do not all fit under `max_pending`."""
        if self._pending + len(request_ids) > self.max_pending:
            raise TooManyPending
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Reply]] = []
        for request_id in request_ids:
            fut: asyncio.Future[Reply] = loop.create_future()
            self._waiters.setdefault(str(request_id).encode(), []).append(fut)
            futures.append(fut)
        self._pending += len(futures)
        return futures

    async def wait_for_room(self) -> None:
        """Return once a waiter was resolved or forgotten (there may be room for more)."""
        self._freed.clear()
        await self._freed.wait()

    def forget(self, request_id: UUID, fut: asyncio.Future[Reply]) -> None:
        key = str(request_id).encode()
        waiters = self._waiters.get(key)
        if waiters is None:
            return
        try:
            waiters.remove(fut)
        except ValueError:
            return
        self._released(1)
        if not waiters:
            del self._waiters[key]

    def _released(self, count: int) -> None:
        self._pending -= count
        self._freed.set()

    def handle(self, batches: dict[TopicPartition, list[Any]]) -> None:
        for records in batches.values():
            for record in records:
                self.seen += 1
                if not self._waiters:
                    continue
                try:
                    self._route(record.key, record.value, record.headers)
                except Exception:  # whatever anyone wrote to a result topic, the reader keeps reading
                    log.exception("skipping a result the gateway cannot read")

    def _route(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        if key is not None and key in self._waiters:
            self._resolve(key, value, any(name == REPUBLISHED_HEADER for name, _ in headers))

    def _resolve(self, key: bytes, value: bytes | None, republished: bool) -> None:
        try:
            event = decode(value)  # type: ignore[arg-type]  # decode refuses None with a reason
        except UndecodableEvent as exc:
            log.warning("undecodable result for %s: %s", key.decode(), exc)
            return
        if not isinstance(event, ConversionAudited | ConversionRejected):
            return
        waiters = self._waiters.pop(key, [])
        self._released(len(waiters))
        for fut in waiters:
            if not fut.done():
                fut.set_result((event, republished))
