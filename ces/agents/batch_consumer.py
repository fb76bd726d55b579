"""Batch consumption for the hot paths: a plain aiokafka consumer loop run as a task of the Faust worker.

Why not a Faust agent: Faust hands events to agents one by one and tops out near 6,500 events/s per
worker on this hardware before any work is done (../shared/FINDINGS.md); aiokafka's `getmany` delivers
whole batches at ~180,000/s. Faust still owns the app, the timer, topic declarations and the worker's
lifecycle; this loop owns consumption for topics where throughput matters.

Delivery: at least once. Offsets are committed only after `handle` returned for the whole batch (its
outputs published and its rows committed). If `handle` raises (database down, broker unavailable), the
same batch is handed to it again with backoff until it succeeds: nothing is skipped. Handlers are
idempotent, so a redelivery after a crash or rebalance has no second effect.
Scaling: every worker joins the same consumer group; partitions are the unit of parallelism.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from ces.agents.dead_letters import Received
from ces.metrics import BATCH_FAILURES, CONSUMED

log = logging.getLogger(__name__)

Handle = Callable[[list[Received]], Awaitable[object]]


class BatchConsumer:
    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topic: str,
        group_id: str,
        handle: Handle,
        max_records: int = 2000,
        max_backoff: float = 5.0,
        depth: int = 2,
    ) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.handle = handle
        self.max_records = max_records
        self.max_backoff = max_backoff
        self.depth = depth

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_records,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        log.info("%s consuming %s as group %s", self.name, self.topic, self.group_id)
        # Two batches in flight: while one waits on PostgreSQL or the broker, the next is fetched,
        # decoded and looked up. Offsets are still committed in order: a batch commits only after the one
        # before it has committed, so a crash never skips an unprocessed batch.
        inflight: deque[asyncio.Task[None]] = deque()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                if batches:
                    after = inflight[-1] if inflight else None
                    inflight.append(asyncio.create_task(self._process(consumer, batches, after)))
                while inflight and (inflight[0].done() or len(inflight) >= self.depth):
                    await inflight.popleft()
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            await consumer.stop()

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[Any]],
        after: asyncio.Task[None] | None,
    ) -> None:
        records = [
            Received(r.topic, r.partition, r.offset, r.key, r.value if r.value is not None else b"", r.timestamp)
            for tp_records in batches.values()
            for r in tp_records
        ]
        delay = 0.1
        while True:
            try:
                await self.handle(records)
                break
            except asyncio.CancelledError:
                raise
            except Exception:
                BATCH_FAILURES.labels(self.name).inc()
                log.exception("%s: batch of %d failed; retrying in %.1fs", self.name, len(records), delay)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
        if after is not None:
            await after  # commit in order
        CONSUMED.labels(self.name).inc(len(records))
        offsets = {tp: OffsetAndMetadata(recs[-1].offset + 1, "") for tp, recs in batches.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away: their new owner re-processes from the last commit,
            # which the idempotent handlers absorb.
            log.warning("%s: offset commit failed (%s); the batch will be redelivered", self.name, exc)
