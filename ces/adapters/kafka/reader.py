"""Reading topics to a cut for `ces reconcile`: plain aiokafka, manual assignment, no group, no commits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ces.adapters.kafka.connection import KafkaConnection
from ces.services.reconcile import AUDITED, REJECTED, DecisionKind, Ledger

log = logging.getLogger(__name__)

# Outcomes of requests produced after --since are published after them, but record timestamps come from
# the producers' clocks: start the outcome topics this much earlier so a skewed clock loses nothing.
OUTCOME_MARGIN = timedelta(minutes=10)

Handle = Callable[[TopicPartition, Sequence[Any]], None]


class TopicMissing(Exception):
    pass


class KafkaReconcileSource:
    """Implements `ces.services.reconcile.ReconcileSource` over the four topics of one deployment.

    The requests are read once, from --since (or the beginning) to their end offsets taken first: that is
    the cut. The outcome topics are read from --since minus `OUTCOME_MARGIN` (or the beginning) to their
    end offsets at each call; a later call continues where the previous one stopped.
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        requests: str,
        audited: str,
        rejected: str,
        dead_letters: str,
        since: datetime | None = None,
        batch: int = 10_000,
    ) -> None:
        self.kafka = kafka
        self.requests = requests
        self.kinds: dict[str, DecisionKind] = {audited: AUDITED, rejected: REJECTED}
        self.dead_letters = dead_letters
        self.since = since
        self.batch = batch
        self._consumer: AIOKafkaConsumer | None = None
        self._outcome_positions: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> KafkaReconcileSource:
        partitions = await self._partitions([self.requests, *self.kinds, self.dead_letters])
        self._request_tps = partitions[self.requests]
        self._outcome_tps = [tp for name in (*self.kinds, self.dead_letters) for tp in partitions[name]]
        self._consumer = AIOKafkaConsumer(
            **self.kafka.kwargs(),
            group_id=None,  # no group: nothing joined, nothing committed, the worker's groups untouched
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="ces-reconcile",
            max_poll_records=self.batch,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=2 * 1024 * 1024,
        )
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use `async with KafkaReconcileSource(...)`")
        return self._consumer

    async def read_requests(self, ledger: Ledger) -> None:
        """The requests up to the cut, and the outcomes up to their ends taken just after it, in one pass
        (the broker serves both while this process parses)."""
        request_ends = await self.consumer.end_offsets(self._request_tps)  # the cut, first
        outcome_starts = await self._outcome_starts()
        outcome_ends = await self.consumer.end_offsets(self._outcome_tps)
        for tp in self._request_tps:
            ledger.add_partition(tp.partition)
        starts = {**await self._starts(self._request_tps, self.since), **outcome_starts}
        position = await self._drain(starts, {**request_ends, **outcome_ends}, self._handler(ledger))
        self._outcome_positions = {tp: position[tp] for tp in self._outcome_tps}

    async def read_outcomes(self, ledger: Ledger) -> None:
        """The outcomes from where the previous read stopped to their current ends."""
        starts = self._outcome_positions or await self._outcome_starts()
        ends = await self.consumer.end_offsets(self._outcome_tps)
        self._outcome_positions = await self._drain(starts, ends, self._handler(ledger))

    async def _outcome_starts(self) -> dict[TopicPartition, int]:
        return await self._starts(self._outcome_tps, self.since - OUTCOME_MARGIN if self.since else None)

    def _handler(self, ledger: Ledger) -> Handle:
        def handle(tp: TopicPartition, records: Sequence[Any]) -> None:
            if tp.topic == self.requests:
                for r in records:
                    ledger.add_request(tp.partition, r.offset, r.value)
            elif tp.topic == self.dead_letters:
                for r in records:
                    ledger.add_dead_letter(r.headers or ())
            else:
                kind = self.kinds[tp.topic]
                for r in records:
                    ledger.add_decision(kind, r.key, r.value)

        return handle

    async def _partitions(self, names: list[str]) -> dict[str, list[TopicPartition]]:
        admin = AIOKafkaAdminClient(**self.kafka.kwargs(), client_id="ces-reconcile")
        await admin.start()
        try:
            # Listing first: a metadata request naming a missing topic makes a broker with
            # auto.create.topics.enable (the local stack's) create it, with one partition.
            existing = set(await admin.list_topics())
            missing = [name for name in names if name not in existing]
            if missing:
                raise TopicMissing(f"topic(s) {', '.join(map(repr, missing))} do not exist (check CES_TOPIC_PREFIX)")
            described = await admin.describe_topics(list(names))
        finally:
            await admin.close()
        found: dict[str, list[TopicPartition]] = {}
        for topic in described:
            # A missing topic would read as nothing and look like success: refuse it.
            if topic["error_code"] or not topic["partitions"]:
                raise TopicMissing(f"topic {topic['topic']!r} does not exist (check CES_TOPIC_PREFIX)")
            found[topic["topic"]] = sorted(
                (TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]),
                key=lambda tp: tp.partition,
            )
        return found

    async def _starts(self, tps: list[TopicPartition], since: datetime | None) -> dict[TopicPartition, int]:
        begins = await self.consumer.beginning_offsets(tps)
        if since is None:
            return dict(begins)
        ends = await self.consumer.end_offsets(tps)
        by_time = await self.consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        starts = {}
        for tp in tps:
            found = by_time.get(tp)
            starts[tp] = max(found.offset if found is not None else ends[tp], begins[tp])
        return starts

    async def _drain(
        self, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int], handle: Handle
    ) -> dict[TopicPartition, int]:
        """Hand every record in [start, end) of each partition to `handle`; return where each stopped."""
        consumer = self.consumer
        position = dict(starts)
        pending = [tp for tp in starts if position[tp] < ends[tp]]
        consumer.assign(pending)  # replaces the previous assignment
        for tp in pending:
            consumer.seek(tp, position[tp])
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=self.batch)
            for tp, records in batches.items():
                end = ends[tp]
                handle(tp, records if records[-1].offset < end else [r for r in records if r.offset < end])
            for tp in list(pending):
                # The position, not the last record + 1: it also steps over offsets with no record for us
                # (transaction markers, compacted gaps); clamped to the cut.
                position[tp] = min(await consumer.position(tp), ends[tp])
                if position[tp] >= ends[tp]:
                    pending.remove(tp)
                    consumer.pause(tp)
        return position
