"""The worker's batch consumers (rates projection, conversions): plain aiokafka loops run as Faust tasks.

They are not Faust agents on purpose: a Faust agent tops out near 6,500 events/s on this stack
(docs/architecture.md), a batch loop decides and commits a whole fetch in one transaction.
Both publish through the worker's one producer (`FaustSender`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import faust

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.dead_letters import DeadLetters, Headers
from ces.adapters.kafka.producer import BatchSender, ResultPublisher
from ces.agents.batch_consumer import BatchConsumer
from ces.events.topics import DEAD_LETTERS
from ces.services.ports import EventPublisher, Received


@dataclass(frozen=True)
class ConsumerPolicy:
    """The failure policy's and the group membership's knobs (settings `CES_HANDLER_MAX_ATTEMPTS`, ...)."""

    max_attempts: int = 5
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000


Handle = Callable[[list[Received]], Awaitable[object]]
HandlerFactory = Callable[[EventPublisher, DeadLetters], Handle]


@dataclass(frozen=True)
class ConsumerSpec:
    """One batch consumer: which topic, which group, how many records a batch, and its handler."""

    name: str
    topic: str
    group_id: str
    max_records: int
    make_handler: HandlerFactory
    batches_in_flight: int = 8


def register_consumer(
    app: faust.App,
    spec: ConsumerSpec,
    *,
    kafka: KafkaConnection,
    topic_prefix: str,
    producer: BatchSender,
    policy: ConsumerPolicy,
) -> None:
    async def run() -> None:
        async def send_dead_letter(key: bytes | None, value: bytes, headers: Headers) -> None:
            future = await producer.send(topic_prefix + DEAD_LETTERS.name, value, key=key, headers=headers)
            await future

        dead_letters = DeadLetters(send_dead_letter)
        consumer = BatchConsumer(
            name=spec.name,
            kafka=kafka,
            topic=topic_prefix + spec.topic,
            group_id=spec.group_id,
            handle=spec.make_handler(ResultPublisher(producer, topic_prefix), dead_letters),
            dead_letters=dead_letters,
            max_records=spec.max_records,
            depth=spec.batches_in_flight,
            max_attempts=policy.max_attempts,
            session_timeout_ms=policy.session_timeout_ms,
            heartbeat_interval_ms=policy.heartbeat_interval_ms,
        )
        await consumer.run()

    run.__name__ = run.__qualname__ = f"consume_{spec.name}"
    app.task(run)
