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
