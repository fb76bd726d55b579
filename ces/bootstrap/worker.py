"""Wiring the Faust worker: its app, the leader-elected rate timer, the two batch consumers and the one producer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import faust
import redis.asyncio as aioredis
from sqlalchemy import Engine

from ces.adapters.kafka.producer import AckedPublisher
from ces.adapters.postgres.async_record import AsyncRecorder
from ces.adapters.postgres.fetch_lease import PostgresFetchLease
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.providers.ecb import EcbClient
from ces.adapters.providers.fixer import FixerClient
from ces.agents.app import FaustSender, create_app, register_metrics_page
from ces.agents.consumers import ConsumerPolicy, ConsumerSpec, register_consumer
from ces.agents.rates import register_fetch_timer
from ces.bootstrap import (
    build_decider,
    build_engine,
    build_rate_cache,
    build_rate_lookup,
    build_rate_tracking,
    build_redis,
    ensure_all_topics,
    kafka_connection,
    use_event_loop,
)
from ces.events import topics
from ces.events.signing import RequestVerifier
from ces.heap import settle_heap
from ces.metrics import RATE_FETCH_RETRIES, RATE_FETCHES
from ces.projections.rate_projection import RateEventHandler
from ces.services.conversion_handler import ConversionHandler
from ces.services.rate_fetching import FetchOutcome, RateFetcher
from ces.services.rate_providers import RateProvider
from ces.services.retry import RetryPolicy
from ces.settings import Settings

log = logging.getLogger(__name__)


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
    producer: FaustSender  # the one producer every publisher of the worker sends through
    recorder: AsyncRecorder

    def close(self) -> None:
        """Closes the database connections once the app has stopped (the Redis client dies with the loop)."""
        self.recorder.close()
        self.engine.dispose()


def build_worker_app(settings: Settings) -> Worker:
    app = create_app(settings)
    producer = FaustSender(app)
    engine = build_engine(settings, pre_ping=False)
    redis_client = build_redis(settings)
    cache = build_rate_cache(settings, redis_client)
    fetcher = RateFetcher(
        provider_factory(settings),
        AckedPublisher(producer, settings.topic_prefix),
        PostgresFetchLease(engine),
        retry_policy(settings),
        settings.fetch_interval_seconds,
        retry_seconds=settings.fetch_retry_seconds,
        on_outcome=record_outcome,
    )
    register_fetch_timer(
        app, fetcher=fetcher, provider_name=settings.provider, fetch_interval_seconds=settings.fetch_interval_seconds
    )
    projector = RateProjector(engine, max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds))
    # The decider's reads of the rates, confirmed by Redis's invalidation pushes rather than a call per batch.
    tracking = build_rate_tracking(settings, redis_client)
    if tracking is not None:
        app.task(tracking.run)
    decider = build_decider(settings, build_rate_lookup(settings, engine, redis_client, tracking))
    store = AsyncRecorder(engine, connections=settings.conversion_batches_in_flight)
    verifier = RequestVerifier(settings.signing_keys)
    if not settings.signing_keys:
        log.warning(
            "CES_REQUEST_SIGNING_KEY is not set: every conversion request that names requested_by "
            "(all the gateway's) will be rejected as unauthenticated_requester"
        )
    consumers = (
        ConsumerSpec(
            name="rates",
            topic=topics.RATES_FETCHED.name,
            group_id=f"{settings.app_id}-rates",
            max_records=settings.projection_batch_size,
            make_handler=lambda publisher, dead: RateEventHandler(projector, cache, dead).handle,
        ),
        ConsumerSpec(
            name="conversions",
            topic=topics.CONVERSION_REQUESTS.name,
            group_id=f"{settings.app_id}-conversions",
            max_records=settings.conversion_batch_size,
            batches_in_flight=settings.conversion_batches_in_flight,
            make_handler=lambda publisher, dead: (
                ConversionHandler(
                    decider,
                    store,
                    publisher,
                    dead,
                    max_amount=settings.max_amount,
                    max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
                    verifier=verifier,
                ).handle
            ),
        ),
    )
    for spec in consumers:
        register_consumer(
            app,
            spec,
            kafka=kafka_connection(settings),
            topic_prefix=settings.topic_prefix,
            producer=producer,
            policy=consumer_policy(settings),
        )
    register_metrics_page(app)
    return Worker(app, engine, redis_client, producer, store)


def run_worker(settings: Settings) -> None:
    use_event_loop(settings)
    ensure_all_topics(settings)
    worker = build_worker_app(settings)
    try:
        ReadyWorker(worker.app, loglevel=logging.getLevelName(settings.log_level.upper())).execute_from_commandline()
    finally:
        worker.close()


READY_LINE = "ces worker ready"


class ReadyWorker(faust.Worker):
    """Prints READY_LINE once started, whatever the log level: `cesdev up` and the tests wait for it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust's terminal spinner: at log level WARNING or above it sets the root logger to DEBUG and spins
        # on every record, so each library's debug call (aiokafka logs every send) built a log record on the
        # hot path (2% of the worker's CPU under load, docs/http.md). A service has no terminal to spin.
        self.spinner = None

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        settle_heap()
        print(READY_LINE, flush=True)
