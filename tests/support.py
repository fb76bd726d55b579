"""Helpers shared by the integration and e2e tests (real services only)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from sqlalchemy import create_engine, text


def drop_schema(database_url: str, schema: str) -> None:
    admin = create_engine(database_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Publish (key, value) pairs as an outside service would, and wait for every acknowledgement."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


DEV_COMMANDS = frozenset({"stack", "up", "down", "provider-sim"})


def cli(*args: str) -> list[str]:
    """The argv of `ces <args>`, or of `cesdev <args>` for the development commands (stack, simulator)."""
    module = "cesdev" if args and args[0] in DEV_COMMANDS else "ces"
    return [sys.executable, "-m", module, *args]
