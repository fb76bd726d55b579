"""Wiring: the one place that builds CES's real adapters from settings, for every entry point.

`ces.bootstrap.worker` assembles the Faust worker, `ces.bootstrap.gateway` the HTTP gateway; the `ces` command
asks the builders here for what each of its commands needs. Unit tests build the same graphs with fakes.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.partitioner import KeyPartitioner
from ces.adapters.kafka.producer import AckedPublisher, BulkPublisher, bulk_publisher, compression_type
from ces.events.topics import CONVERSIONS_AUDITED, CONVERSIONS_REJECTED, TopicSpec
from ces.settings import Settings

# Imported where they are built: `ces rates backfill` needs Kafka only, and these (SQLAlchemy, Redis, the
# replay, the conversion services) were most of its start-up (docs/replay.md "Backfill").
if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from sqlalchemy import Engine

    from ces.adapters.kafka.topic_source import KafkaTopicSource
    from ces.adapters.postgres.replay_target import PostgresReplayTarget
    from ces.adapters.redis.rate_cache import RateCache
    from ces.adapters.redis.rate_tracking import RateTracking
    from ces.projections.replay import EventSource, ProgressSink, Replay, ReplayOptions, ReplayTarget
    from ces.services.conversion_requests import ConversionRequester
    from ces.services.conversions import ConversionDecider
    from ces.services.rate_lookup import RateLookup


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    return settings.topic_prefix + spec.name


def use_event_loop(settings: Settings) -> None:
    """Make `CES_EVENT_LOOP` the loop of every loop this process creates from now on (call before any)."""
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def kafka_connection(settings: Settings) -> KafkaConnection:
    """How this process reaches Kafka: every client CES builds goes through it (docs/security.md)."""
    return KafkaConnection.from_settings(settings)


def build_engine(settings: Settings, *, pre_ping: bool = True) -> Engine:
    """`pre_ping`: test each connection with a round trip when it leaves the pool. The worker turns it off:
    every batch it records paid that round trip (PostgreSQL CPU and latency), and a connection that died with
    a restart fails its batch with a transient error instead, which the batch consumer retries while
    SQLAlchemy replaces the pool's connections (docs/http.md)."""
    from sqlalchemy import create_engine

    return create_engine(settings.database_dsn, pool_size=5, max_overflow=5, pool_pre_ping=pre_ping)


def build_redis(settings: Settings) -> aioredis.Redis:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.redis_dsn, socket_timeout=2, socket_connect_timeout=2)


def build_rate_cache(settings: Settings, client: aioredis.Redis, tracking: RateTracking | None = None) -> RateCache:
    from ces.adapters.redis.rate_cache import RateCache

    return RateCache(client, key_prefix=settings.redis_key_prefix, tracking=tracking)


def build_rate_tracking(settings: Settings, client: aioredis.Redis) -> RateTracking | None:
    """The worker's tracking of the rate keys (None when `CES_RATE_TRACKING` is off); its `run` is a task."""
    if not settings.rate_tracking:
        return None
    from ces.adapters.redis.rate_tracking import RateTracking

    return RateTracking(
        client, key_prefix=settings.redis_key_prefix, heartbeat=settings.rate_tracking_heartbeat_seconds
    )


def build_rate_lookup(
    settings: Settings, engine: Engine, redis_client: aioredis.Redis, tracking: RateTracking | None = None
) -> RateLookup:
    from ces.adapters.postgres.rate_store import RateRepository
    from ces.services.rate_lookup import RateLookup

    return RateLookup(
        build_rate_cache(settings, redis_client, tracking), RateRepository(engine), settings.provider_base
    )


def build_decider(settings: Settings, lookup: RateLookup) -> ConversionDecider:
    """The conversion rules (margins, staleness) the worker decides with and the gateway quotes with."""
    from ces.services.conversions import ConversionDecider

    return ConversionDecider(
        lookup,
        default_margin=settings.default_margin,
        margin_overrides=settings.margin_overrides,
        max_rate_age=timedelta(seconds=settings.max_rate_age_seconds),
    )


def build_producer(settings: Settings, *, linger_ms: int = 5, compression: str | None = None) -> AIOKafkaProducer:
    """The process's one producer: idempotent, acknowledged by every in-sync replica, batches compressed with
    `compression`, by default `CES_KAFKA_COMPRESSION` (zstd and lz4 through aiokafka's `cramjam`)."""
    return AIOKafkaProducer(
        **kafka_connection(settings).kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
        compression_type=compression_type(compression or settings.kafka_compression),
        partitioner=KeyPartitioner(),
    )


def ensure_all_topics(settings: Settings) -> list[str]:
    return asyncio.run(
        ensure_topics(
            kafka_connection(settings),
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            prefix=settings.topic_prefix,
        )
    )


@asynccontextmanager
async def backfill_publisher(settings: Settings) -> AsyncIterator[BulkPublisher]:
    """`ces rates backfill`: CES's topics ensured, then a bulk publisher, flushed (acknowledged) when the block
    exits. Kafka only: the backfill's start-up imports none of the rest (SQLAlchemy, Redis, the services)."""
    await ensure_topics(
        kafka_connection(settings),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        prefix=settings.topic_prefix,
    )
    async with bulk_publisher(
        kafka_connection(settings), settings.topic_prefix, compression=settings.kafka_compression
    ) as publisher:
        yield publisher


def _replay_parts(settings: Settings, options: ReplayOptions) -> tuple[KafkaTopicSource, PostgresReplayTarget]:
    from ces.adapters.kafka.topic_source import KafkaTopicSource
    from ces.adapters.postgres.replay_target import (
        PostgresReplayTarget,
        bulk_batchers,
        bulk_preparers,
        bulk_writers,
    )

    source = KafkaTopicSource(
        kafka_connection(settings), batch_size=options.batch_size, topic_prefix=settings.topic_prefix
    )
    # A replay creates its target schema and tables: the owner role's work, not the application's.
    target = PostgresReplayTarget(
        settings.migration_database_dsn,
        options.target_schema,
        writers=bulk_writers(timedelta(seconds=settings.max_clock_skew_seconds)),
        preparers=bulk_preparers(),
        batchers=bulk_batchers(),
    )
    return source, target


@dataclass(frozen=True)
class ReplayWorkerParts:
    """`--jobs`: builds a worker process's own source and target there (picklable: settings and options)."""

    settings: Settings
    options: ReplayOptions

    def __call__(self) -> tuple[EventSource, ReplayTarget]:
        return _replay_parts(self.settings, self.options)


def build_replay(settings: Settings, options: ReplayOptions, progress: ProgressSink) -> Replay:
    """`ces replay` on the real Kafka and PostgreSQL: audits by COPY, rates with the live worker's clock skew."""
    from ces.projections.replay import Replay

    # The main process migrates the target (`PostgresReplayTarget.prepare`; the `--jobs` worker processes never
    # import alembic): imported now, so that `settle_heap` freezes its modules with the rest of start-up.
    importlib.import_module("ces.adapters.postgres.migrate")
    source, target = _replay_parts(settings, options)
    return Replay(
        options,
        source,
        target,
        progress,
        topic_prefix=settings.topic_prefix,
        workers=ReplayWorkerParts(settings, options),
    )


@asynccontextmanager
async def conversion_requester(settings: Settings, *, max_pending: int) -> AsyncIterator[ConversionRequester]:
    """`ces convert`: produce requests and read their decisions as this process's principal (an outside
    producer: `ces-producer`). Decisions are read like the gateway reads them, from the end of the decision
    topics with manually assigned partitions: no consumer group, so no group ACL is needed."""
    from ces.adapters.kafka.replies import ReplyRouter
    from ces.services.conversion_requests import ConversionRequester

    producer = build_producer(settings, linger_ms=20)
    await producer.start()
    try:
        prefix = settings.topic_prefix
        router = ReplyRouter(
            kafka_connection(settings),
            [prefix + CONVERSIONS_AUDITED.name, prefix + CONVERSIONS_REJECTED.name],
            max_pending=max_pending,
        )
        await router.start(producer.partitions_for)
        try:
            yield ConversionRequester(
                AckedPublisher(producer, prefix), router, timeout=settings.gateway_timeout_seconds
            )
        finally:
            await router.stop()
    finally:
        await producer.stop()
