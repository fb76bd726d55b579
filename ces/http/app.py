"""The gateway's app factory: clients opened and closed by `cleanup_ctx`, routes from `routes.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine, text

from ces.adapters.kafka.producer import AckedPublisher
from ces.adapters.kafka.replies import ReplyRouter
from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_store import RateRepository
from ces.agents.consumers import producer_for
from ces.bootstrap import build_engine, build_rate_lookup, build_redis
from ces.events.topics import CONVERSIONS_AUDITED, CONVERSIONS_REJECTED
from ces.http.deps import DEPS, Deps
from ces.http.problems import Handler, problems_middleware
from ces.http.routes import ROUTES
from ces.services.conversion_requests import ConversionRequester
from ces.settings import Settings

REQUESTS = Histogram(
    "ces_http_request_seconds",
    "Gateway request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PENDING = Gauge("ces_gateway_pending_conversions", "Conversions waiting for their result")
RESULTS_SEEN = Counter("ces_gateway_results_seen", "Results read by this gateway instance (its own and others')")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    REQUESTS.labels(request.method, route, str(response.status)).observe(time.perf_counter() - started)
    return response


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.gateway_max_body_bytes, middlewares=[metrics_middleware, problems_middleware]
    )
    app.cleanup_ctx.append(_clients(settings))
    app.add_routes(ROUTES)
    return app


def _clients(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        engine = build_engine(settings)
        redis_client = build_redis(settings)
        producer = producer_for(settings.kafka_bootstrap)
        await producer.start()
        prefix = settings.topic_prefix
        router = ReplyRouter(
            settings.kafka_bootstrap,
            [prefix + CONVERSIONS_AUDITED.name, prefix + CONVERSIONS_REJECTED.name],
            max_pending=settings.gateway_max_pending,
        )
        await router.start(producer.partitions_for)
        audits = AuditStore(engine)
        repository = RateRepository(engine)

        async def readiness() -> dict[str, tuple[bool, str]]:
            checks = dict(
                zip(
                    ("kafka", "postgres", "redis"),
                    await asyncio.gather(_kafka_ok(producer), _postgres_ok(engine), _redis_ok(redis_client)),
                    strict=True,
                )
            )
            checks["replies"] = (True, "reading") if router.healthy else (False, "result reader stopped")
            return checks

        app[DEPS] = Deps(
            settings=settings,
            engine=engine,
            audits=audits,
            rates=repository,
            lookup=build_rate_lookup(settings, engine, redis_client),
            requester=ConversionRequester(
                audits, AckedPublisher(producer, prefix), router, timeout=settings.gateway_timeout_seconds
            ),
            readiness=readiness,
        )
        gauge_task = asyncio.create_task(_export_gauges(router))
        try:
            yield
        finally:
            gauge_task.cancel()
            await router.stop()
            await producer.stop()
            await redis_client.aclose()
            engine.dispose()

    return ctx


async def _export_gauges(router: ReplyRouter) -> None:
    seen = 0
    while True:
        PENDING.set(router.pending)
        RESULTS_SEEN.inc(router.seen - seen)
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


def run_gateway(settings: Settings) -> None:
    import logging

    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(levelname)s] %(name)s: %(message)s")
    web.run_app(create_app(settings), host=settings.gateway_host, port=settings.gateway_port, access_log=None)
