"""The worker's wiring: one producer (Faust's, made idempotent) for Faust's own topics and every CES event."""

from __future__ import annotations

import asyncio

from ces.agents.app import FaustSender, IdempotentProducer
from ces.bootstrap.worker import build_worker_app
from ces.settings import Settings


def test_the_worker_has_one_producer_and_it_is_idempotent_with_acks_all() -> None:
    async def build() -> None:
        worker = build_worker_app(Settings(app_id="wiring-test", worker_web_port=6099))
        try:
            producer = worker.app.producer
            assert isinstance(producer, IdempotentProducer)
            assert producer._settings_extra() == {"acks": "all", "enable_idempotence": True}
            # CES's publishers send through Faust's producer, not one of their own.
            assert isinstance(worker.producer, FaustSender)
            assert worker.producer.app is worker.app
        finally:
            worker.engine.dispose()
            await worker.redis.aclose()

    asyncio.run(build())


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for() -> None:
    import uvloop

    from ces.bootstrap import use_event_loop

    before = asyncio.get_event_loop_policy()
    try:
        use_event_loop(Settings(event_loop="asyncio"))
        assert asyncio.get_event_loop_policy() is before  # the stdlib loop: nothing changed
        use_event_loop(Settings())
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(before)


def test_the_worker_records_without_a_pre_ping_and_spins_no_spinner() -> None:
    from ces.bootstrap.worker import ReadyWorker

    async def build() -> None:
        worker = build_worker_app(Settings())
        try:
            # A pre-ping is a PostgreSQL round trip per batch; the batch consumer retries a dead connection.
            assert worker.engine.pool._pre_ping is False
            # Faust's spinner turns the root logger to DEBUG at WARNING and above (docs/http.md).
            assert ReadyWorker(worker.app, loglevel=30).spinner is None
        finally:
            worker.engine.dispose()
            await worker.redis.aclose()

    asyncio.run(build())
