"""The Faust app of a worker: its group membership (which elects the timer's leader), lifecycle and web page.

What Faust does for CES: it runs the worker process (start, signals, graceful stop), elects one leader per
consumer group for the rate fetch timer (`on_leader=True`), hosts the batch consumers as tasks, and serves
`/metrics` on its web port. What it does not do: consume CES's topics (the batch consumers are plain aiokafka
loops). Its producer is the worker's one producer: Faust needs it for its own assignor topic, and every CES event
goes out through it too (`FaustSender`), made idempotent with acks from every in-sync replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer as FaustAiokafkaProducer

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.partitioner import KeyPartitioner
from ces.adapters.kafka.producer import Message
from ces.settings import Settings


def create_app(settings: Settings, *, app_id: str | None = None, web_enabled: bool = True) -> faust.App:
    kafka = KafkaConnection.from_settings(settings)
    # Faust creates `<app id>-data` itself but not its parent: a fresh machine (or a cleaned /tmp) has none.
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id or settings.app_id,
        broker=kafka.faust_broker(),
        broker_credentials=kafka.faust_credentials(),
        store="memory://",
        datadir=str(settings.worker_data_dir / "{conf.id}-data"),
        # At-least-once with idempotent handlers; exactly-once is not reliable in faust-streaming.
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        web_enabled=web_enabled,
        web_port=settings.worker_web_port,
        web_host="127.0.0.1",
        # Faust's own group (the timer's leader election) follows the same session as the batch
        # consumers: a worker killed with -9 is replaced in seconds, not after Faust's 60 s default.
        broker_session_timeout=settings.consumer_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.consumer_heartbeat_interval_ms / 1000,
        producer_acks=-1,
        # Every millisecond of linger is added to each synchronous conversion's round trip; under load
        # batches fill anyway while the previous send is in flight (docs/http.md, "Producer linger").
        producer_linger_ms=settings.worker_linger_ms,
        producer_max_batch_size=512 * 1024,
        producer_partitioner=KeyPartitioner(),  # the same partitions as aiokafka's, 4x cheaper per message
    )
    app.transport.Producer = IdempotentProducer  # type: ignore[misc]  # before anything creates the producer
    return app


class IdempotentProducer(FaustAiokafkaProducer):
    """Faust's producer, idempotent outside transactions too: a retried send is never written twice."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class FaustSender:
    """The `Sender` of every CES event in a worker: Faust's own producer, started on first use."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self._producer: Any = None

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[Any]:
        if self._producer is None:
            self._producer = await self.app.maybe_start_producer()
        future: asyncio.Future[Any] = await self._producer.send(topic, key, value, None, None, headers)
        return future

    async def send_many(self, messages: Sequence[Message]) -> list[asyncio.Future[Any]]:
        """Every message to aiokafka's producer under Faust's, in order: Faust's `send` wrapper (its sensors'
        hook, header conversion) is per message and did nothing CES uses."""
        if self._producer is None:
            self._producer = await self.app.maybe_start_producer()
        kafka = self._producer._ensure_producer()  # read per call: the one Faust's producer holds now
        return [await kafka.send(topic, value, key=key, headers=headers) for topic, value, key, headers in messages]


def register_metrics_page(app: faust.App) -> None:
    from faust.web import Request, Response, View
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
