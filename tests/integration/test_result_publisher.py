"""The worker's results through Faust's own (idempotent, acks=all) producer against the real broker: every
result on its topic, on the partition a plain `send` picks for its key, with the republished mark."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.kafka.producer import ResultPublisher
from ces.agents.app import FaustSender, create_app
from ces.events.topics import CONVERSIONS_AUDITED, CONVERSIONS_REJECTED
from ces.services.ports import REPUBLISHED_HEADER
from ces.settings import Settings
from tests.contracts.audit_store import audited, rejected

PARTITIONS = 4


@pytest.fixture
async def prefix(settings: Settings, unique: str) -> AsyncIterator[str]:
    """A topic prefix of this test's own, with the two result topics created under it (deleted after)."""
    name = f"test-results-{unique}."
    topics = [name + CONVERSIONS_AUDITED.name, name + CONVERSIONS_REJECTED.name]
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics])
        yield name
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def test_results_land_on_their_keys_partitions_acknowledged_with_the_mark(
    settings: Settings, prefix: str, unique: str
) -> None:
    fresh = [audited(uuid.uuid4(), [uuid.uuid4()]) for _ in range(6)] + [rejected(uuid.uuid4()) for _ in range(3)]
    again = [audited(uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()])]
    app = create_app(settings, app_id=f"test-results-{unique}", web_enabled=False)
    sender = FaustSender(app)
    publisher = ResultPublisher(sender, prefix)
    try:
        await publisher.publish(fresh)  # returns once every one is acknowledged
        await publisher.publish(again, republished=True)
    finally:
        await app.producer.stop()
    expected = {e.key(): e for e in fresh + again}
    consumer = AIOKafkaConsumer(
        prefix + CONVERSIONS_AUDITED.name,
        prefix + CONVERSIONS_REJECTED.name,
        **kafka_kwargs(settings),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen = {}
    try:
        deadline = time.monotonic() + 30
        while len(seen) < len(expected) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen.update({r.key: r for r in records})
    finally:
        await consumer.stop()
    assert seen.keys() == expected.keys()
    partitioner, partitions = DefaultPartitioner(), list(range(PARTITIONS))
    assert len({partitioner(key, partitions, partitions) for key in expected}) > 1  # the check below can fail
    for key, event in expected.items():
        record = seen[key]
        assert record.topic == prefix + event.TOPIC
        assert record.value == event.to_json()
        assert record.partition == partitioner(key, partitions, partitions)
        assert list(record.headers) == ([(REPUBLISHED_HEADER, b"1")] if event in again else [])
