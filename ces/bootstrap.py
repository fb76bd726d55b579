"""Wiring: builds the real clients and the Faust app from settings. Tests build the same graph with fakes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import faust
import redis.asyncio as aioredis
from sqlalchemy import Engine, create_engine

from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.fetch_lease import PostgresFetchLease
from ces.adapters.postgres.rate_store import RateProjector, RateRepository
from ces.adapters.providers.base import RateProvider
from ces.adapters.providers.ecb import EcbClient
from ces.adapters.providers.fixer import FixerClient
from ces.adapters.redis.rate_cache import RateCache
from ces.agents.app import create_app
from ces.agents.consumers import ConsumerPolicy, register_conversions, register_rate_projection
from ces.agents.publishing import FaustPublisher
from ces.agents.rates import register_fetch_timer
from ces.events import topics
from ces.metrics import RATE_FETCH_RETRIES, RATE_FETCHES
from ces.projections.rate_projection import RateEventHandler
from ces.services.conversions import ConversionDecider
from ces.services.rate_fetching import FetchOutcome, RateFetcher
from ces.services.rate_lookup import RateLookup
from ces.services.retry import RetryPolicy
from ces.settings import Settings

log = logging.getLogger(__name__)


def topic_name(settings: Settings, spec: topics.TopicSpec) -> str:
    return settings.topic_prefix + spec.name


def build_engine(settings: Settings) -> Engine:
    return create_engine(settings.database_url, pool_size=5, max_overflow=5, pool_pre_ping=True)


def build_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.fetch_max_attempts,
        initial_delay=settings.fetch_backoff_initial_seconds,
        max_delay=settings.fetch_backoff_max_seconds,
        max_total=settings.fetch_max_total_seconds,
    )


def provider_factory(
    settings: Settings,
) -> Callable[[], Awaitable[tuple[RateProvider, Callable[[], Awaitable[None]]]]]:
    """A fresh HTTP session per fetch (hourly): nothing to keep alive between ticks."""

    async def build() -> tuple[RateProvider, Callable[[], Awaitable[None]]]:
        session = aiohttp.ClientSession()
        provider: RateProvider
        if settings.provider == "fixer":
            symbols = [s.strip() for s in settings.provider_symbols.split(",") if s.strip()] or None
            provider = FixerClient(
                session,
                settings.provider_url,
                settings.provider_access_key,
                base_currency=settings.provider_base,
                symbols=symbols,
                timeout=settings.fetch_timeout_seconds,
                max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            )
        else:
            provider = EcbClient(
                session,
                settings.provider_url,
                timeout=settings.fetch_timeout_seconds,
                max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            )
        return provider, session.close

    return build


def consumer_policy(settings: Settings) -> ConsumerPolicy:
    return ConsumerPolicy(
        max_attempts=settings.handler_max_attempts,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
    )


def record_outcome(outcome: FetchOutcome) -> None:
    RATE_FETCHES.labels(outcome.provider, "failed" if outcome.failed else "ok").inc()
    RATE_FETCH_RETRIES.labels(outcome.provider).inc(len(outcome.delays))


@dataclass
class Worker:
    app: faust.App
    engine: Engine
    redis: aioredis.Redis


def build_rate_lookup(settings: Settings, engine: Engine, redis_client: aioredis.Redis) -> RateLookup:
    cache = RateCache(redis_client, key_prefix=settings.redis_key_prefix)
    return RateLookup(cache, RateRepository(engine), settings.provider_base)


def build_worker_app(settings: Settings) -> Worker:
    app = create_app(settings)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    faust_topics = {
        spec.name: app.topic(topic_name(settings, spec), **raw)  # type: ignore[arg-type]
        for spec in topics.ALL_TOPICS
    }
    engine = build_engine(settings)
    redis_client = build_redis(settings)
    cache = RateCache(redis_client, key_prefix=settings.redis_key_prefix)
    fetcher = RateFetcher(
        provider_factory(settings),
        FaustPublisher(faust_topics),
        PostgresFetchLease(engine),
        retry_policy(settings),
        settings.fetch_interval_seconds,
        retry_seconds=settings.fetch_retry_seconds,
        on_outcome=record_outcome,
    )
    register_fetch_timer(
        app, fetcher=fetcher, provider_name=settings.provider, fetch_interval_seconds=settings.fetch_interval_seconds
    )
    register_rate_projection(
        app,
        bootstrap=settings.kafka_bootstrap,
        topic_prefix=settings.topic_prefix,
        app_id=settings.app_id,
        batch=settings.projection_batch_size,
        make=lambda dead: RateEventHandler(
            RateProjector(engine, max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds)), cache, dead
        ),
        policy=consumer_policy(settings),
    )
    decider = ConversionDecider(
        build_rate_lookup(settings, engine, redis_client),
        default_margin=settings.default_margin,
        margin_overrides=settings.margin_overrides,
        max_rate_age=timedelta(seconds=settings.max_rate_age_seconds),
    )
    register_conversions(
        app,
        bootstrap=settings.kafka_bootstrap,
        topic_prefix=settings.topic_prefix,
        app_id=settings.app_id,
        batch=settings.conversion_batch_size,
        decider=decider,
        store=AuditStore(engine),
        max_amount=settings.max_amount,
        policy=consumer_policy(settings),
    )
    register_metrics_page(app)
    return Worker(app, engine, redis_client)


def register_metrics_page(app: faust.App) -> None:
    from faust.web import Request, Response, View
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


def ensure_all_topics(settings: Settings) -> list[str]:
    return asyncio.run(
        topics.ensure_topics(
            settings.kafka_bootstrap,
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            prefix=settings.topic_prefix,
        )
    )


def run_worker(settings: Settings) -> None:
    ensure_all_topics(settings)
    worker = build_worker_app(settings)
    ReadyWorker(worker.app, loglevel=logging.getLevelName(settings.log_level.upper())).execute_from_commandline()


READY_LINE = "ces worker ready"


class ReadyWorker(faust.Worker):
    """Prints READY_LINE once started, whatever the log level: `ces up` and the tests wait for it."""

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        print(READY_LINE, flush=True)
