"""Creating CES's topics on the broker, explicitly and idempotently."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ces.adapters.kafka.connection import KafkaConnection
from ces.events.topics import ALL_TOPICS, TopicSpec


async def ensure_topics(
    kafka: KafkaConnection,
    specs: tuple[TopicSpec, ...] = ALL_TOPICS,
    *,
    partitions: int,
    replication_factor: int = 1,
    prefix: str = "",
) -> list[str]:
    """Create the missing topics; existing ones are left as they are. Returns the names created."""
    admin = AIOKafkaAdminClient(**kafka.kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                prefix + spec.name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=dict(spec.config),
            )
            for spec in specs
            if prefix + spec.name not in existing
        ]
        if missing:
            # Another worker may create them between our list and our create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
