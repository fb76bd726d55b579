"""Reading topics from their current end, outside any consumer group: the gateway's reply and rate readers."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from ces.adapters.kafka.connection import KafkaConnection


async def tail_from_now(kafka: KafkaConnection, partitions: list[TopicPartition]) -> AIOKafkaConsumer:
    """A started consumer with `partitions` assigned (no group, no commits), positioned at their end offsets
    as of this call: a record appended after it returns is never missed."""
    consumer = AIOKafkaConsumer(**kafka.kwargs(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now, not lazily at the first fetch
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer
