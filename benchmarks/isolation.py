"""One benchmark run's private corner of the shared stack: its names, its environment, its set-up and clean-up.

Every benchmark that starts CES processes runs them on a schema, topic prefix, Redis key prefix and app id of
its own (`bench_<run>`, `bench-<run>-`, ...), so that several engineers' runs, and the tests, share one stack
without seeing each other's rows, records or keys. `Isolation.new()` picks the names; `create()` migrates the
schema and creates the topics; `env()` is what the processes need to stay inside them; `cleanup()` drops it
all (topics and keys best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass

import redis
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection, kafka_kwargs
from ces.adapters.postgres import migrate
from ces.settings import Settings


def in_schema(url: str, schema: str) -> str:
    """`url` with `schema` first on the search path of every connection made from it."""
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (held open together so the kernel cannot hand out one twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass(frozen=True)
class Isolation:
    run: str
    settings: Settings  # the admin's: it migrates, creates topics and cleans up
    schema: str
    app_id: str
    topic_prefix: str
    redis_prefix: str

    @classmethod
    def new(cls, settings: Settings | None = None) -> Isolation:
        run = uuid.uuid4().hex[:8]
        return cls(run, settings or Settings(), f"bench_{run}", f"bench-{run}", f"bench-{run}-", f"bench-{run}:")

    @property
    def database_url(self) -> str:
        """The application's DSN (passwords included: for child processes), inside the schema."""
        return in_schema(self.settings.database_dsn, self.schema)

    @property
    def owner_url(self) -> str:
        return in_schema(self.settings.migration_database_dsn, self.schema)

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment plus what keeps a CES process inside the run: its names, no live rate
        fetches (the provider URL points at the discard port), warnings only. `extra` goes on top."""
        return {
            **os.environ,
            "CES_APP_ID": self.app_id,
            "CES_TOPIC_PREFIX": self.topic_prefix,
            "CES_REDIS_KEY_PREFIX": self.redis_prefix,
            "CES_DATABASE_URL": self.database_url,
            "CES_PROVIDER_URL": "http://127.0.0.1:9",
            "CES_FETCH_MAX_ATTEMPTS": "1",
            "CES_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def create(self, partitions: int | None = None) -> None:
        """Migrates the schema and creates every topic under the prefix."""
        migrate.upgrade(self.settings.migration_database_dsn, schema=self.schema)
        connection = KafkaConnection.from_settings(self.settings)
        count = partitions or self.settings.topic_partitions
        asyncio.run(ensure_topics(connection, partitions=count, prefix=self.topic_prefix))

    def cleanup(self) -> None:
        """Drop the schema, every topic under the prefix (Faust's own too) and the Redis keys (both best effort)."""
        admin = create_engine(self.settings.migration_database_dsn)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()

        async def delete_topics() -> None:
            client = AIOKafkaAdminClient(**kafka_kwargs(self.settings.kafka_bootstrap))
            await client.start()
            try:
                names = [t for t in await client.list_topics() if t.startswith(self.topic_prefix)]
                if names:
                    await client.delete_topics(names)
            finally:
                await client.close()

        with contextlib.suppress(Exception):
            asyncio.run(delete_topics())
        with contextlib.suppress(Exception):
            client = redis.Redis.from_url(self.settings.redis_dsn, socket_timeout=2, socket_connect_timeout=2)
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
