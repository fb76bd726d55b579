"""The worker's batch consumers (rates projection, conversions), each a Faust task with its own producer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import faust
from aiokafka import AIOKafkaProducer

from ces.adapters.kafka.dead_letters import DeadLetters, Headers, Received
from ces.adapters.kafka.producer import AckedPublisher
from ces.adapters.postgres.audit_store import AuditStore
from ces.agents.batch_consumer import BatchConsumer
from ces.events.topics import CONVERSION_REQUESTS, DEAD_LETTERS, RATES_FETCHED
from ces.projections.rate_projection import RateEventHandler
from ces.services.conversion_handler import ConversionHandler
from ces.services.conversions import ConversionDecider


@dataclass(frozen=True)
class ConsumerPolicy:
    """The failure policy's and the group membership's knobs (settings `CES_HANDLER_MAX_ATTEMPTS`, ...)."""

    max_attempts: int = 5
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000


HandlerFactory = Callable[[AckedPublisher, DeadLetters], Callable[[list[Received]], Awaitable[object]]]


def producer_for(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=512 * 1024
    )


def register_consumer(
    app: faust.App,
    *,
    name: str,
    bootstrap: str,
    topic_prefix: str,
    topic: str,
    group_id: str,
    max_records: int,
    make_handler: HandlerFactory,
    policy: ConsumerPolicy,
) -> None:
    async def run() -> None:
        producer = producer_for(bootstrap)
        await producer.start()

        async def send_dead_letter(key: bytes | None, value: bytes, headers: Headers) -> None:
            await producer.send_and_wait(topic_prefix + DEAD_LETTERS.name, value, key=key, headers=headers)

        try:
            dead_letters = DeadLetters(send_dead_letter)
            handle = make_handler(AckedPublisher(producer, topic_prefix), dead_letters)
            consumer = BatchConsumer(
                name=name,
                bootstrap=bootstrap,
                topic=topic_prefix + topic,
                group_id=group_id,
                handle=handle,
                dead_letters=dead_letters,
                max_records=max_records,
                max_attempts=policy.max_attempts,
                session_timeout_ms=policy.session_timeout_ms,
                heartbeat_interval_ms=policy.heartbeat_interval_ms,
            )
            await consumer.run()
        finally:
            await producer.stop()

    run.__name__ = run.__qualname__ = f"consume_{name}"
    app.task(run)


def register_rate_projection(
    app: faust.App,
    *,
    bootstrap: str,
    topic_prefix: str,
    app_id: str,
    batch: int,
    make: Callable[[DeadLetters], RateEventHandler],
    policy: ConsumerPolicy,
) -> None:
    register_consumer(
        app,
        name="rates",
        bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        topic=RATES_FETCHED.name,
        group_id=f"{app_id}-rates",
        max_records=batch,
        make_handler=lambda sink, dead: make(dead).handle,
        policy=policy,
    )


def register_conversions(
    app: faust.App,
    *,
    bootstrap: str,
    topic_prefix: str,
    app_id: str,
    batch: int,
    decider: ConversionDecider,
    store: AuditStore,
    max_amount: Decimal,
    policy: ConsumerPolicy,
) -> None:
    register_consumer(
        app,
        name="conversions",
        bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        topic=CONVERSION_REQUESTS.name,
        group_id=f"{app_id}-conversions",
        max_records=batch,
        make_handler=lambda sink, dead: ConversionHandler(decider, store, sink, dead, max_amount=max_amount).handle,
        policy=policy,
    )
