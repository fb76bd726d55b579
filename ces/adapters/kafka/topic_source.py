"""The replay's `EventSource` on Kafka: reads given partitions from given offsets with aiokafka, outside any
consumer group (manual assignment, no commits), so the live workers' groups never see it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ces.adapters.kafka.connection import KafkaConnection
from ces.projections.replay.model import Partition, Record, ReplayError

CLIENT_ID = "ces-replay"
# Fetches of at most 1 MiB a partition and 4 MiB a response. aiokafka keeps a partition's fetched bytes until
# they are consumed and fetches ahead, and a response of N bytes costs about 3N at its peak while it is read
# and cut into partitions (the socket's buffer, the response, each partition's copy): at 8 MiB a partition and
# 32 MiB a response that was ~60 MiB of each replay process's peak RSS, independent of the batch size, and
# no faster (docs/replay.md, "Peak memory"). A batch larger than what one fetch brings is filled by further
# `getmany` calls.
PARTITION_FETCH_BYTES = 1 << 20
FETCH_BYTES = 4 << 20
# How long filling a batch waits for the next fetch's response (a local round trip is a few ms); only the
# last batch of a partition read to its end waits it out, or a batch under a slow broker comes out smaller.
FILL_WAIT_MS = 100


def _partition(described: dict[str, Any]) -> int:
    return int(described["partition"])


def _ours(offsets: Mapping[TopicPartition, Any]) -> dict[Partition, Any]:
    return {Partition(tp.topic, tp.partition): value for tp, value in offsets.items()}


class KafkaTopicSource:
    def __init__(self, kafka: KafkaConnection, *, batch_size: int, topic_prefix: str = "") -> None:
        self.kafka = kafka
        self.topic_prefix = topic_prefix  # only to say, when a topic is missing, which prefix was used
        self.batch_size = batch_size
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("KafkaTopicSource used outside `async with`")
        return self._consumer

    async def __aenter__(self) -> KafkaTopicSource:
        consumer = AIOKafkaConsumer(
            **self.kafka.kwargs(),
            group_id=None,  # no group: nothing joined, nothing committed, live groups untouched
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=CLIENT_ID,
            max_poll_records=self.batch_size,
            fetch_max_bytes=FETCH_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        )
        await consumer.start()
        self._consumer = consumer
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def partitions(self, topics: Sequence[str]) -> list[Partition]:
        admin = AIOKafkaAdminClient(**self.kafka.kwargs(), client_id=CLIENT_ID)
        await admin.start()
        try:
            described = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        found = {t["topic"]: t for t in described}
        tps: list[Partition] = []
        for name in topics:
            topic = found.get(name)
            # An empty partition list would replay nothing and look like success: refuse it.
            if topic is None or topic["error_code"] or not topic["partitions"]:
                raise ReplayError(f"topic {name!r} does not exist (CES_TOPIC_PREFIX={self.topic_prefix!r})")
            tps.extend(Partition(name, p["partition"]) for p in sorted(topic["partitions"], key=_partition))
        return tps

    async def end_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return _ours(await self.consumer.end_offsets([TopicPartition(*tp) for tp in partitions]))

    async def beginning_offsets(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        return _ours(await self.consumer.beginning_offsets([TopicPartition(*tp) for tp in partitions]))

    async def offsets_for_time(self, partitions: Sequence[Partition], since: datetime) -> dict[Partition, int | None]:
        since_ms = int(since.timestamp() * 1000)
        found = await self.consumer.offsets_for_times({TopicPartition(*tp): since_ms for tp in partitions})
        return {tp: (at.offset if at is not None else None) for tp, at in _ours(found).items()}

    def seek(self, starts: Mapping[Partition, int]) -> None:
        self.consumer.assign([TopicPartition(*tp) for tp in starts])  # replaces the previous assignment
        for tp, offset in starts.items():
            self.consumer.seek(TopicPartition(*tp), offset)

    async def fetch(self, partitions: Sequence[Partition], max_records: int) -> list[Record]:
        tps = [TopicPartition(*tp) for tp in partitions]
        records: list[Record] = []
        wait = 1000
        while len(records) < max_records:
            batches = await self.consumer.getmany(*tps, timeout_ms=wait, max_records=max_records - len(records))
            if not batches:
                break
            records.extend(
                (tp.topic, tp.partition, r.offset, r.value or b"") for tp, recs in batches.items() for r in recs
            )
            wait = FILL_WAIT_MS
        return records

    async def position(self, partition: Partition) -> int:
        return int(await self.consumer.position(TopicPartition(*partition)))

    def pause(self, partition: Partition) -> None:
        self.consumer.pause(TopicPartition(*partition))
