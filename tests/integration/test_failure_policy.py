"""The failure policy's classification of what the real PostgreSQL, Redis and Kafka raise."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from sqlalchemy import Connection, Engine, create_engine, text

from ces.adapters.failures import Failure, classify
from ces.adapters.kafka.connection import kafka_kwargs


def raised(engine: Engine, statement: Callable[[Connection], object]) -> BaseException:
    try:
        with engine.begin() as conn:
            statement(conn)
    except Exception as exc:
        return exc
    raise AssertionError("the statement did not fail")


RATE = (
    "INSERT INTO exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at, "
    "fetched_at, fetch_id, event_id) VALUES (gen_random_uuid(), 'EUR', 'USD', :v, :p, now(), now(), "
    "gen_random_uuid(), gen_random_uuid())"
)


@pytest.mark.parametrize(
    ("case", "statement", "kind"),
    [
        ("check violation", lambda c: c.execute(text(RATE), {"v": -1, "p": "x"}), Failure.MESSAGE),
        ("NUL in text", lambda c: c.execute(text(RATE), {"v": 1, "p": "a\x00b"}), Failure.MESSAGE),
        ("lone surrogate", lambda c: c.execute(text(RATE), {"v": 1, "p": "\ud800"}), Failure.MESSAGE),
        (
            "value too long",
            lambda c: c.execute(text(RATE.replace("'EUR'", "'EURO'")), {"v": 1, "p": "x"}),
            Failure.MESSAGE,
        ),
        (
            "read-only transaction",
            lambda c: (c.execute(text("SET TRANSACTION READ ONLY")), c.execute(text(RATE), {"v": 1, "p": "x"})),
            Failure.TRANSIENT,
        ),
        ("missing table", lambda c: c.execute(text("INSERT INTO no_such_table VALUES (1)")), Failure.TRANSIENT),
        (
            "insert-only trigger (insufficient privilege)",
            lambda c: c.execute(text("UPDATE exchange_rate SET provider_name = 'x'")),
            Failure.TRANSIENT,
        ),
    ],
)
def test_postgres_errors(
    pg_schema: tuple[Engine, str], case: str, statement: Callable[[Connection], object], kind: Failure
) -> None:
    engine, _ = pg_schema
    if "trigger" in case:
        with engine.begin() as conn:
            conn.execute(text(RATE), {"v": 1, "p": "x"})
    assert classify(raised(engine, statement)) is kind, case


def test_postgres_unreachable() -> None:
    engine = create_engine("postgresql+psycopg2://ces:ces@127.0.0.1:1/ces")
    try:
        assert classify(raised(engine, lambda c: c.execute(text("SELECT 1")))) is Failure.TRANSIENT
    finally:
        engine.dispose()


async def test_redis_and_kafka_unreachable() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(Exception) as redis_error:  # noqa: PT011 - whatever it raises is what we classify
        await client.ping()
    await client.aclose()
    assert classify(redis_error.value) is Failure.TRANSIENT

    producer = AIOKafkaProducer(**kafka_kwargs("127.0.0.1:1"), request_timeout_ms=1000)
    with pytest.raises(Exception) as kafka_error:  # noqa: PT011
        await producer.start()
    await producer.stop()
    assert classify(kafka_error.value) is Failure.TRANSIENT


def test_unexpected_errors_are_neither() -> None:
    assert classify(KeyError("x")) is Failure.UNEXPECTED
    assert classify(ValueError("something else")) is Failure.UNEXPECTED
