"""Batch consumption for the hot paths: a plain aiokafka consumer loop run as a task of the Faust worker.

Why not a Faust agent: Faust hands events to agents one by one and tops out near 6,500 events/s per
worker on this hardware before any work is done (../shared/FINDINGS.md); aiokafka's `getmany` delivers
whole batches at ~180,000/s. Faust still owns the app, the timer, topic declarations and the worker's
lifecycle; this loop owns consumption for topics where throughput matters.

Delivery: at least once. Offsets are committed only after every message of the batch was handled (its
outputs published and its rows committed) or dead-lettered, and in order, but not per batch: the offsets
of finished batches are committed together at most every `commit_interval` seconds (when batches stop
coming, at the first empty fetch after the interval), by a task beside the fetch loop: an offset commit is
a broker round trip and a write to `__consumer_offsets`, and committing whenever no batch was in flight
made it about one per batch at light and medium load, with the next fetch waiting for it. One commit runs
at a time and each takes what was finished when it starts, so committed offsets only move forward. A
worker killed hard redelivers what it finished in its last `commit_interval` (plus its batches in
flight), which the idempotent handlers absorb; a stopped one commits first, and so does one whose
partitions a rebalance takes away.
Failures follow the one policy of `ces.adapters.failures`: a transient failure (database down, broker
unavailable) retries the batch with backoff until it succeeds, so nothing is skipped; any other failure
isolates the failing message by splitting the batch, and that message alone is retried a bounded number
of times, then dead-lettered with its reason. A partition never stalls on one message. Handlers are
idempotent, so a redelivery after a crash or rebalance has no second effect.
Scaling: every worker joins the same consumer group; partitions are the unit of parallelism.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from ces.adapters.failures import Failure, classify
from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.dead_letters import DeadLetters
from ces.metrics import BATCH_FAILURES, CONSUMED, HANDLER_ERRORS
from ces.services.ports import Received

log = logging.getLogger(__name__)

Handle = Callable[[list[Received]], Awaitable[object]]
_new_received = tuple.__new__


class BatchConsumer:
    def __init__(
        self,
        *,
        name: str,
        kafka: KafkaConnection,
        topic: str,
        group_id: str,
        handle: Handle,
        dead_letters: DeadLetters,
        max_records: int = 2000,
        max_backoff: float = 5.0,
        depth: int = 8,
        max_attempts: int = 5,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        commit_interval: float = 0.5,
    ) -> None:
        self.name = name
        self.kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.handle = handle
        self.max_records = max_records
        self.max_backoff = max_backoff
        self.depth = depth
        self.dead_letters = dead_letters
        self.max_attempts = max_attempts
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.commit_interval = commit_interval
        self._finished: dict[TopicPartition, int] = {}  # next offset per partition, handled but not committed
        self._consumed = CONSUMED.labels(name)  # looked up once: at light load every request is a batch
        self._committing: asyncio.Task[None] | None = None

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.kafka.kwargs(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_records,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # A worker killed with -9 holds its partitions until its session expires: a short session
            # is what makes the group move them to a restarted or surviving worker quickly.
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )
        consumer.subscribe([self.topic], listener=_CommitOnRevoke(self, consumer))
        await consumer.start()
        log.info("%s consuming %s as group %s", self.name, self.topic, self.group_id)
        # Up to `depth` batches in flight: while some wait on PostgreSQL or the broker, the next is
        # fetched, decoded and looked up. Light traffic makes small batches, and with two in flight a
        # request waited for a slot about as long as it took to be handled (c=8: round trip p50 29 -> 20 ms
        # with 8, docs/http.md). Memory stays bounded by depth x max_records. Offsets are still committed
        # in order: a batch commits only after the one before it has committed, so a crash never skips an
        # unprocessed batch.
        inflight: deque[asyncio.Task[None]] = deque()
        loop = asyncio.get_running_loop()
        committed_at = loop.time()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if batches:
                    after = inflight[-1] if inflight else None
                    inflight.append(asyncio.create_task(self._process(batches, after)))
                while inflight and (inflight[0].done() or len(inflight) >= self.depth):
                    await inflight.popleft()
                if (
                    self._finished
                    and loop.time() - committed_at >= self.commit_interval
                    and (self._committing is None or self._committing.done())
                ):
                    self._committing = asyncio.create_task(self._commit(consumer))
                    committed_at = loop.time()
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            try:
                await self._commit_now(consumer)
            finally:
                await consumer.stop()

    async def _process(
        self,
        batches: dict[TopicPartition, list[Any]],
        after: asyncio.Task[None] | None,
    ) -> None:
        # `tuple.__new__`: the NamedTuple's own constructor costs a Python frame more per record.
        records = [
            _new_received(
                Received,
                (
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value if r.value is not None else b"",
                    r.timestamp,
                    r.headers,
                ),
            )
            for tp_records in batches.values()
            for r in tp_records
        ]
        await self._handle(records)
        if after is not None:
            await after  # offsets advance in order
        self._consumed.inc(len(records))
        for tp, recs in batches.items():
            self._finished[tp] = recs[-1].offset + 1

    async def _commit_now(self, consumer: AIOKafkaConsumer) -> None:
        """Commit what is finished now, after the commit already running (so offsets only move forward)."""
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)  # it logs its own failure
        if self._finished:
            # As a task in `_committing`: the fetch loop starts no other commit while this one runs.
            self._committing = asyncio.create_task(self._commit(consumer))
            await self._committing

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        finished, self._finished = self._finished, {}
        # A batch that finished after a rebalance took its partition away must not fail the others' commit.
        assigned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in finished.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away: their new owner re-processes from the last commit,
            # which the idempotent handlers absorb.
            log.warning("%s: offset commit failed (%s); those batches will be redelivered", self.name, exc)

    async def _handle(self, records: list[Received]) -> None:
        """Handle `records` under the failure policy; returns once each was handled or dead-lettered."""
        delay = 0.1
        attempts = 0
        while True:
            try:
                await self.handle(records)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = classify(exc)
                BATCH_FAILURES.labels(self.name, kind.value).inc()
                if kind is Failure.TRANSIENT:
                    log.warning(
                        "%s: batch of %d failed (%s: %s); retrying in %.1fs",
                        self.name,
                        len(records),
                        type(exc).__name__,
                        _first_line(exc),
                        delay,
                    )
                elif len(records) > 1:
                    log.warning(
                        "%s: batch of %d failed (%s: %s); isolating the failing message",
                        self.name,
                        len(records),
                        type(exc).__name__,
                        _first_line(exc),
                    )
                    half = len(records) // 2
                    await self._handle(records[:half])
                    await self._handle(records[half:])
                    return
                elif kind is Failure.MESSAGE:
                    await self._dead_letter(records[0], "refused_by_database", exc)
                    return
                else:
                    attempts += 1
                    if attempts >= self.max_attempts:
                        log.error(
                            "%s: %s[%d]@%d failed %d times; dead-lettering it",
                            self.name,
                            records[0].topic,
                            records[0].partition,
                            records[0].offset,
                            attempts,
                            exc_info=exc,
                        )
                        HANDLER_ERRORS.labels(self.name).inc()
                        await self._dead_letter(records[0], "handler_error", exc)
                        return
                    log.warning("%s: message failed (attempt %d): %r", self.name, attempts, exc)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)

    async def _dead_letter(self, message: Received, reason: str, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}"
        delay = 0.1
        while True:  # the dead-letter topic is on the same broker: wait for it like any transient failure
            try:
                await self.dead_letters.publish(message, reason, detail)
                return
            except asyncio.CancelledError:
                raise
            except Exception as publish_error:
                log.warning("%s: dead-lettering failed (%s); retrying in %.1fs", self.name, publish_error, delay)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before a rebalance moves partitions, commit what was finished on them: the new owner starts there."""

    def __init__(self, owner: BatchConsumer, consumer: AIOKafkaConsumer) -> None:
        self.owner = owner
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.owner._commit_now(self.consumer)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.split("\n", 1)[0][:300]
