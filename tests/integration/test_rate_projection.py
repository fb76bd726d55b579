"""The rate projection against real PostgreSQL, Redis and Kafka: idempotent rows, a cache that never
goes backwards, poison messages dead-lettered, and a table the database itself keeps insert-only."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.kafka.dead_letters import DeadLetters, Headers
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.rate_store import RateRepository
from ces.adapters.redis.rate_cache import RateCache
from ces.events.rates import RateFetched
from ces.projections.rate_projection import RateEventHandler
from ces.services.ports import Received
from ces.settings import Settings
from tests.integration.conftest import NewTopicFactory

T0 = datetime(2024, 3, 14, 15, 0, tzinfo=UTC)


def rate_event(target: str, value: str, published_at: datetime, provider: str = "ecb") -> RateFetched:
    return RateFetched.for_quote(
        provider_name=provider,
        base_currency="EUR",
        target_currency=target,
        rate_value=Decimal(value),
        published_at=published_at,
        fetched_at=published_at + timedelta(minutes=5),
        fetch_id=uuid.uuid4(),
    )


def as_received(event: RateFetched | bytes, offset: int = 0) -> Received:
    value = event if isinstance(event, bytes) else event.to_json()
    return Received("rates-fetched", 0, offset, b"EUR:USD", value)


class CollectingDeadLetters(DeadLetters):
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes, Headers]] = []

        async def send(key: bytes | None, value: bytes, headers: Headers) -> None:
            self.sent.append((key, value, headers))

        super().__init__(send)


@pytest.fixture
def cache(redis_client: aioredis.Redis, unique: str) -> RateCache:
    return RateCache(redis_client, key_prefix=f"test-{unique}:")


async def test_redelivered_and_replayed_events_add_no_rows(pg_schema: tuple[Engine, str], cache: RateCache) -> None:
    engine, _ = pg_schema
    handler = RateEventHandler(RateProjector(engine), cache, CollectingDeadLetters())
    events = [rate_event("USD", "1.0892", T0), rate_event("JPY", "161.87", T0)]
    assert await handler.handle([as_received(e) for e in events]) == 2
    # Same batch again (redelivery), then the same publication fetched again with a new fetch id.
    assert await handler.handle([as_received(e) for e in events]) == 0
    refetched = rate_event("USD", "1.0892", T0)
    assert refetched.rate_id == events[0].rate_id
    assert await handler.handle([as_received(refetched)]) == 0
    assert RateRepository(engine).count() == 2


async def test_cache_never_moves_backwards(pg_schema: tuple[Engine, str], cache: RateCache) -> None:
    engine, _ = pg_schema
    handler = RateEventHandler(RateProjector(engine), cache, CollectingDeadLetters())
    older = rate_event("USD", "1.0800", T0)
    newer = rate_event("USD", "1.0900", T0 + timedelta(days=1))
    await handler.handle([as_received(newer)])
    await handler.handle([as_received(older)])  # replayed / reordered: arrives after the newer one
    cached = await cache.get("EUR", "USD")
    assert cached is not None
    assert cached.rate_id == newer.rate_id and cached.rate_value == Decimal("1.0900")
    # Both are in the history; the repository's latest agrees with the cache.
    latest = RateRepository(engine).latest("EUR", "USD")
    assert latest is not None and latest.rate_id == newer.rate_id
    assert RateRepository(engine).count() == 2


async def test_poison_messages_are_dead_lettered_and_the_rest_projected(
    pg_schema: tuple[Engine, str], cache: RateCache
) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    good = rate_event("GBP", "0.8571", T0)
    float_rate = good.to_json().replace(b'"rate_value":"0.8571"', b'"rate_value":0.8571')
    batch = [as_received(b"{not json", 1), as_received(good, 2), as_received(float_rate, 3), as_received(b"[]", 4)]
    assert await handler.handle(batch) == 1
    reasons = [dict(h)["ces.dlq.reason"] for _, _, h in dead.sent]
    assert reasons == [b"invalid_json", b"invalid_event", b"not_an_object"]
    assert [v for _, v, _ in dead.sent] == [b"{not json", float_rate, b"[]"]  # original bytes, unchanged
    assert dict(dead.sent[1][2])["ces.dlq.source.offset"] == b"3"


async def test_redis_down_does_not_stop_the_projection(pg_schema: tuple[Engine, str]) -> None:
    engine, _ = pg_schema
    unreachable = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    handler = RateEventHandler(RateProjector(engine), RateCache(unreachable), CollectingDeadLetters())
    try:
        assert await handler.handle([as_received(rate_event("CHF", "0.9561", T0))]) == 1
    finally:
        await unreachable.aclose()
    assert RateRepository(engine).count() == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE exchange_rate SET rate_value = 2",
        "DELETE FROM exchange_rate",
        "TRUNCATE exchange_rate CASCADE",
    ],
)
def test_exchange_rate_is_insert_only_in_the_database(
    pg_schema: tuple[Engine, str], owner_engine: Engine, statement: str
) -> None:
    engine, _ = pg_schema
    RateProjector(engine).project([rate_event("USD", "1.0892", T0)])
    # The application role lacks the privilege; even the owner, who has it, meets the trigger.
    with pytest.raises(DBAPIError, match="permission denied"), engine.begin() as conn:
        conn.execute(text(statement))
    with pytest.raises(DBAPIError, match="insert-only"), owner_engine.begin() as conn:
        conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT rate_value FROM exchange_rate")).scalar_one() == Decimal("1.0892")


def test_tiny_and_huge_rates_keep_every_digit(pg_schema: tuple[Engine, str]) -> None:
    engine, _ = pg_schema
    tiny = rate_event("KWD", "0.0000163200000012345", T0)  # e.g. IDR->KWD scale, 15 significant digits
    huge = rate_event("VND", "27123456.123456789012", T0)
    RateProjector(engine).project([tiny, huge])
    repo = RateRepository(engine)
    kwd, vnd = repo.latest("EUR", "KWD"), repo.latest("EUR", "VND")
    assert kwd is not None and kwd.rate_value == Decimal("0.0000163200000012345")
    assert vnd is not None and vnd.rate_value == Decimal("27123456.123456789012")


async def test_dead_letters_reach_the_dead_letter_topic_with_headers(
    settings: Settings, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("dlq")
    producer = AIOKafkaProducer(**kafka_kwargs(settings.kafka_bootstrap))
    await producer.start()

    async def send(key: bytes | None, value: bytes, headers: Headers) -> None:
        await producer.send_and_wait(topic, value, key=key, headers=headers)

    try:
        await DeadLetters(send).publish(as_received(b"\xff\xfe garbage", 42), "invalid_json", "bad utf-8")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, **kafka_kwargs(settings.kafka_bootstrap), auto_offset_reset="earliest")
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert record.value == b"\xff\xfe garbage"
    assert headers["ces.dlq.reason"] == b"invalid_json"
    assert headers["ces.dlq.source.offset"] == b"42"
