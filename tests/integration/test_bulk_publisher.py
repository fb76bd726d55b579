"""The bulk publisher (backfill, tools) against the real broker: every message acknowledged, each key on the
partition a plain `send` picks for it, and in the order published."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.kafka.producer import bulk_publisher
from ces.settings import Settings
from tests.integration.conftest import NewTopicFactory

KEYS = [f"EUR:{code}".encode() for code in ("USD", "JPY", "GBP", "CHF", "SEK", "NOK", "PLN", "CZK", "HUF")]


@pytest.mark.parametrize("compression", ["none", "zstd"])
async def test_bulk_messages_land_where_send_puts_their_key_in_order(
    settings: Settings, new_topic: NewTopicFactory, compression: str
) -> None:
    topic = await new_topic("bulk", partitions=4)
    producer = AIOKafkaProducer(**kafka_kwargs(settings))
    await producer.start()
    try:  # where a plain, per-message send puts each key
        where = {key: (await (await producer.send(topic, b"probe", key=key))).partition for key in KEYS}
    finally:
        await producer.stop()
    assert len(set(where.values())) > 1  # the keys spread: the check below can fail
    count = 25_000  # several full batches per partition (values of ~500 bytes, batches of 512 KiB)
    async with bulk_publisher(KafkaConnection.from_settings(settings), compression=compression) as publisher:
        for start in range(0, count, 1000):
            await publisher.publish_encoded(
                topic, [(KEYS[i % len(KEYS)], f"{i:08d}".encode() + b"x" * 500) for i in range(start, start + 1000)]
            )
    assert publisher.sent == count
    consumer = AIOKafkaConsumer(topic, **kafka_kwargs(settings), auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    seen: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    try:
        total = 0
        deadline = time.monotonic() + 60
        while total < count + len(KEYS) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for r in records:
                    total += 1
                    if r.value != b"probe":
                        assert r.key is not None and r.value is not None
                        seen[r.key].append((r.partition, int(r.value[:8])))
    finally:
        await consumer.stop()
    for i, key in enumerate(KEYS):
        assert {p for p, _ in seen[key]} == {where[key]}
        assert [n for _, n in seen[key]] == list(range(i, count, len(KEYS)))  # all of them, in order
