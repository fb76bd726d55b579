"""The Faust app factory: the one place a worker's app, topics and agents are put together."""

from __future__ import annotations

import faust

from ces.settings import Settings


def create_app(settings: Settings, *, app_id: str | None = None, web_enabled: bool = True) -> faust.App:
    return faust.App(
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
