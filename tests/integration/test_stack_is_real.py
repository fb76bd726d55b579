"""Proof that the local stack is the real thing: a broker, a database and a cache over real sockets."""

from __future__ import annotations

import asyncio
import subprocess

import faust
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import Engine, inspect, text

from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.postgres import migrate
from ces.settings import Settings
from tests.integration.conftest import NewTopicFactory
from tests.support import cli


async def test_aiokafka_message_round_trips_through_a_consumer_group(
    settings: Settings, new_topic: NewTopicFactory, unique: str
) -> None:
    topic = await new_topic("roundtrip", partitions=3)
    producer = AIOKafkaProducer(**kafka_kwargs(settings.kafka_bootstrap), acks="all")
    await producer.start()
    try:
        sent = {f"key-{i}".encode(): f"value-{i}-{unique}".encode() for i in range(10)}
        for key, value in sent.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        **kafka_kwargs(settings.kafka_bootstrap),
        group_id=f"test-group-{unique}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(30):
            while len(received) < len(sent):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        assert record.key is not None and record.value is not None
                        received[record.key] = record.value
        await consumer.commit()
        assignment = consumer.assignment()
    finally:
        await consumer.stop()
    assert received == sent
    assert len(assignment) == 3  # the group coordinator gave this member every partition


async def test_faust_app_sends_and_receives_on_the_broker(
    settings: Settings, new_topic: NewTopicFactory, unique: str
) -> None:
    topic_name = await new_topic("faust")
    kafka = KafkaConnection.from_settings(settings)
    app = faust.App(
        f"test-faust-{unique}",
        broker=kafka.faust_broker(),
        broker_credentials=kafka.faust_credentials(),
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(topic_name, value_serializer="raw")
    received: asyncio.Queue[bytes] = asyncio.Queue()

    @app.agent(topic)
    async def collect(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            await received.put(value)

    await app.start()
    try:
        await topic.send(value=f"hello-{unique}".encode())
        value = await asyncio.wait_for(received.get(), timeout=30)
    finally:
        await app.stop()
    assert value == f"hello-{unique}".encode()


def test_postgres_answers_and_the_migrated_schema_exists(pg_schema: tuple[Engine, str], owner_engine: Engine) -> None:
    engine, schema = pg_schema
    with owner_engine.connect() as conn:
        version = conn.execute(text("SELECT version()")).scalar_one()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version.startswith("PostgreSQL ")
    assert {revision} == migrate.current_heads()
    tables = set(inspect(engine).get_table_names(schema=schema))
    assert {"exchange_rate", "conversion_request", "conversion_audit", "conversion_rejection"} <= tables


async def test_redis_round_trips_a_key(redis_client: aioredis.Redis, unique: str) -> None:
    key = f"test:{unique}:roundtrip"
    # Hashes: the commands the application's Redis user may run (cesdev.stack.redis.APP_COMMANDS).
    await redis_client.hset(key, "rate_value", "1.07120000")
    try:
        assert await redis_client.hget(key, "rate_value") == b"1.07120000"
    finally:
        await redis_client.delete(key)
    assert await redis_client.hgetall(key) == {}


def test_stack_up_is_idempotent_and_status_reports_every_service() -> None:
    up = subprocess.run(cli("stack", "up"), capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    assert up.stdout.count("already running") + up.stdout.count("left alone") == 3, up.stdout
    status = subprocess.run(cli("stack", "status"), capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("kafka", "postgres", "redis"):
        line = next(line for line in status.stdout.splitlines() if line.split()[0] == name)
        assert " answers " in line, line
