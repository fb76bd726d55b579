"""Real Kafka, PostgreSQL and Redis (the local stack, or whatever CES_* points at), isolated per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import Engine, create_engine

from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.postgres import migrate
from ces.settings import Settings
from cesdev.stack.manager import all_services
from tests.support import drop_schema

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session", autouse=True)
def _stack_answers() -> None:
    settings = Settings()
    down = [s.name for s in all_services(settings) if not s.answers()]
    if down:
        pytest.fail(
            f"integration tests need the stack; not answering: {', '.join(down)}. "
            "Run `cesdev stack up` (or `make test`, which starts it).",
            pytrace=False,
        )


NewTopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_topic(settings: Settings, unique: str) -> AsyncIterator[NewTopicFactory]:
    """Create uniquely named topics for one test and delete them afterwards."""
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    created: list[str] = []

    async def create(prefix: str = "t", partitions: int = 1) -> str:
        name = f"test-{prefix}-{unique}-{len(created)}"
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        created.append(name)
        return name

    try:
        yield create
    finally:
        if created:
            await admin.delete_topics(created)
        await admin.close()


@contextmanager
def migrated_schema(settings: Settings, schema: str, *, owner: bool = False) -> Iterator[Engine]:
    """`schema` migrated to head by the owner role and dropped after, with an engine using it: the application
    role's (as the worker and gateway connect) or, with `owner`, the owner's (as migrations and replays do)."""
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    dsn = settings.migration_database_dsn if owner else settings.database_dsn
    engine = create_engine(dsn, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True)
    try:
        yield engine
    finally:
        engine.dispose()
        drop_schema(settings.migration_database_dsn, schema)


@pytest.fixture
def pg_schema(settings: Settings, unique: str) -> Iterator[tuple[Engine, str]]:
    """A fresh schema, migrated to head by the owner role, with an engine of the application role using it."""
    schema = f"test_{unique}"
    with migrated_schema(settings, schema) as engine:
        yield engine, schema


@pytest.fixture
def owner_engine(settings: Settings, pg_schema: tuple[Engine, str]) -> Iterator[Engine]:
    """The owner role on the test's schema: what migrations and replays use (pg_schema's engine is the
    application role's, as the worker and gateway connect)."""
    _, schema = pg_schema
    engine = create_engine(settings.migration_database_dsn, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_dsn)
    try:
        yield client
    finally:
        await client.aclose()
