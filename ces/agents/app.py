"""The Faust app of a worker: its group membership (which elects the timer's leader), lifecycle and web page.

What Faust does for CES: it runs the worker process (start, signals, graceful stop), elects one leader per
consumer group for the rate fetch timer (`on_leader=True`), hosts the batch consumers as tasks, and serves
`/metrics` on its web port. What it does not do: consume or produce CES's topics. The batch consumers are plain
aiokafka loops and every event goes out through the worker's one `SharedProducer`, so Faust's own producer is
switched off.
"""

from __future__ import annotations

import faust

from ces.settings import Settings


def create_app(settings: Settings, *, app_id: str | None = None, web_enabled: bool = True) -> faust.App:
    app = faust.App(
        app_id or settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",
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
    )
    # One producer per process: the worker's `SharedProducer` sends everything; Faust's would sit idle.
    app.boot_strategy.enable_kafka_producer = False
    return app


def register_metrics_page(app: faust.App) -> None:
    from faust.web import Request, Response, View
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
