"""Wiring the HTTP gateway: its one producer, the reply router, PostgreSQL and Redis, and readiness probes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer
from sqlalchemy import Engine, text

from ces.adapters.kafka.producer import AckedPublisher
from ces.adapters.kafka.rate_feed import RateFeed
from ces.adapters.kafka.replies import ReplyRouter
from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_store import RateRepository
from ces.adapters.redis.rate_limit import RedisRateLimiter
from ces.bootstrap import (
    build_decider,
    build_engine,
    build_producer,
    build_rate_lookup,
    build_redis,
    kafka_connection,
    use_event_loop,
)
from ces.events.signing import RequestSigner
from ces.events.topics import CONVERSIONS_AUDITED, CONVERSIONS_REJECTED, RATES_FETCHED
from ces.heap import settle_heap
from ces.http.app import create_app
from ces.http.auth import QuietBadRequests
from ces.http.deps import Deps
from ces.http.protocol_errors import answer_protocol_errors_with_problems
from ces.metrics import GATEWAY_PENDING, GATEWAY_RESULTS_SEEN
from ces.services.api_keys import KeyVerifier
from ces.services.conversion_requests import ConversionRequester
from ces.services.live_rates import RateBroadcast
from ces.settings import Settings


@asynccontextmanager
async def _open(settings: Settings) -> AsyncIterator[Deps]:
    engine = build_engine(settings)
    redis_client = build_redis(settings)
    producer = build_producer(settings, linger_ms=settings.gateway_linger_ms, compression=request_compression(settings))
    await producer.start()
    prefix = settings.topic_prefix
    router = ReplyRouter(
        kafka_connection(settings),
        [prefix + CONVERSIONS_AUDITED.name, prefix + CONVERSIONS_REJECTED.name],
        max_pending=settings.gateway_max_pending,
    )
    await router.start(producer.partitions_for)
    broadcast = RateBroadcast()
    feed = RateFeed(kafka_connection(settings), prefix + RATES_FETCHED.name, broadcast)
    await feed.start(producer.partitions_for)
    audits = AuditStore(engine)  # the read endpoints' store; POST /v1/conversions reads no database

    async def readiness() -> dict[str, tuple[bool, str]]:
        checks = dict(
            zip(
                ("kafka", "postgres", "redis"),
                await asyncio.gather(_kafka_ok(producer), _postgres_ok(engine), _redis_ok(redis_client)),
                strict=True,
            )
        )
        checks["replies"] = (True, "reading") if router.healthy else (False, "result reader stopped")
        checks["live_rates"] = (True, "reading") if feed.healthy else (False, "rate feed stopped")
        return checks

    lookup = build_rate_lookup(settings, engine, redis_client)
    deps = Deps(
        settings=settings,
        audits=audits,
        rates=RateRepository(engine),
        lookup=lookup,
        requester=ConversionRequester(
            AckedPublisher(producer, prefix, signer=request_signer(settings)),
            router,
            timeout=settings.gateway_timeout_seconds,
        ),
        readiness=readiness,
        keys=KeyVerifier(PostgresApiKeyStore(engine), cache_seconds=settings.api_key_cache_seconds)
        if settings.api_keys_required
        else None,
        limiter=RedisRateLimiter(
            redis_client,
            rate=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
            key_prefix=settings.redis_key_prefix,
            lease=settings.rate_limit_lease,
        ),
        quotes=build_decider(settings, lookup),
        live=broadcast,
    )
    gauge_task = asyncio.create_task(_export_gauges(router))
    try:
        yield deps
    finally:
        gauge_task.cancel()
        await feed.stop()
        await router.stop()
        await producer.stop()
        await redis_client.aclose()
        engine.dispose()


async def _export_gauges(router: ReplyRouter) -> None:
    seen = 0
    while True:
        GATEWAY_PENDING.set(router.pending)
        GATEWAY_RESULTS_SEEN.inc(router.seen - seen)
        seen = router.seen
        await asyncio.sleep(1)


async def _kafka_ok(producer: AIOKafkaProducer) -> tuple[bool, str]:
    try:
        metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=2)
        return True, f"{len(metadata.brokers())} broker(s)"
    except Exception as exc:
        return False, f"{type(exc).__name__}"


async def _postgres_ok(engine: Engine) -> tuple[bool, str]:
    def probe() -> str:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT 1")).scalar_one())

    try:
        await asyncio.wait_for(asyncio.to_thread(probe), timeout=2)
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}"


async def _redis_ok(client: aioredis.Redis) -> tuple[bool, str]:
    try:
        await asyncio.wait_for(client.ping(), timeout=2)
        return True, "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}"


def request_compression(settings: Settings) -> str:
    """What the gateway's producer compresses requests with: `CES_GATEWAY_COMPRESSION`, or with `inherit`
    `CES_KAFKA_COMPRESSION`."""
    return settings.kafka_compression if settings.gateway_compression == "inherit" else settings.gateway_compression


class MissingSigningKey(Exception):
    pass


def request_signer(settings: Settings) -> RequestSigner | None:
    """The signer of the gateway's requests. With API keys on, a gateway without a signing key would have every
    conversion rejected by the worker (`unauthenticated_requester`): it refuses to start instead."""
    key = settings.request_signing_key.get_secret_value()
    if key:
        return RequestSigner(key.encode())
    if settings.api_keys_required:
        raise MissingSigningKey(
            "CES_REQUEST_SIGNING_KEY is not set: the worker believes who asked (requested_by) only on requests "
            "signed with it; give the gateway and the worker the same key (docs/security.md)"
        )
    return None


def build_gateway_app(settings: Settings) -> web.Application:
    request_signer(settings)  # fail at start, not at the first conversion
    app = create_app(settings, lambda: _open(settings))
    app.on_startup.append(_settle_heap)  # after the app's own start-up (its clients and pools are open)
    return app


async def _settle_heap(app: web.Application) -> None:
    settle_heap()


def run_gateway(settings: Settings, *, reuse_port: bool = False) -> None:
    """One gateway process. `reuse_port`: share the port with sibling processes (SO_REUSEPORT)."""
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("aiohttp.server").addFilter(QuietBadRequests())
    answer_protocol_errors_with_problems()
    use_event_loop(settings)
    web.run_app(
        build_gateway_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        access_log=None,
        reuse_port=reuse_port or None,
        print=lambda line: print(f"{line} (pid {os.getpid()})", flush=True),
    )


def run_gateways(settings: Settings, processes: int) -> int:
    """`ces gateway --processes N`: N whole gateways (each its own producer, reply reader and pools) sharing
    the port; the kernel spreads new connections across them. A reply reaches the instance that waits for it
    because every instance reads all results and skips, by key and without decoding, those it has no waiter
    for (`ces.adapters.kafka.replies`). If one process dies the others are stopped too and the command exits
    with its status: the supervisor (systemd, Kubernetes) restarts the whole gateway, never a silently
    weaker one."""
    if processes == 1:
        run_gateway(settings)
        return 0
    context = multiprocessing.get_context("spawn")  # each child builds its loop and clients from scratch
    children = [context.Process(target=_serve, args=(settings,), name=f"ces-gateway-{i}") for i in range(processes)]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        while not stopping and all(child.is_alive() for child in children):
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: aiohttp's run_app shuts down cleanly on it
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
                child.join()
    failed = [child.exitcode for child in children if child.exitcode not in (0, -signal.SIGTERM)]
    return 0 if stopping or not failed else int(failed[0] or 1)


def _serve(settings: Settings) -> None:
    run_gateway(settings, reuse_port=True)
