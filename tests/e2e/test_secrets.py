"""No secret in any log line or event of a run: passwords, the signing key, an API key, the provider's access key."""

from __future__ import annotations

import asyncio
import secrets
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import create_engine

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.events import topics
from ces.services.api_keys import Scope, create_key
from ces.settings import Settings
from tests.e2e.conftest import Isolation, StartCes, free_port, poll
from tests.support import role_env


class EchoingProvider(BaseHTTPRequestHandler):
    """A provider that fails with HTTP 500 and quotes the whole request line back, access key included: the
    worst a provider can do to a key that travels in the query string."""

    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        body = f"upstream error for {self.path}".encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def provider() -> Iterator[tuple[int, list[str]]]:
    handler = type("Echo", (EchoingProvider,), {"paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler.paths
    finally:
        server.shutdown()
        server.server_close()


async def every_record(settings: Settings, prefix: str) -> list[tuple[str, bytes, list[tuple[str, bytes]]]]:
    """Every record (topic, value, headers) on the run's topics, read to their end."""
    consumer = AIOKafkaConsumer(**KafkaConnection.from_settings(settings).kwargs(), enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []
    try:
        partitions = [
            TopicPartition(prefix + spec.name, p)
            for spec in topics.ALL_TOPICS
            for p in (
                consumer.partitions_for_topic(prefix + spec.name) or await _partitions(consumer, prefix + spec.name)
            )
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        async with asyncio.timeout(60):
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [(r.topic, r.value or b"", list(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return found


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def test_no_secret_reaches_any_log_line_or_event_of_a_run(
    start_ces: StartCes, isolation: Isolation, settings: Settings, provider: tuple[int, list[str]], tmp_path: Path
) -> None:
    """A worker whose Fixer provider fails and echoes the access key back, a gateway that signs requests and
    rate-limits (429 past the burst, real Redis), an API key in use: none of the secrets appears in any
    process's output or in any record (value or header) on the run's topics."""
    provider_port, provider_paths = provider
    access_key = f"fixer-live-{secrets.token_hex(12)}"
    signing_key = secrets.token_hex(32)
    shared = {**isolation.env, "CES_REQUEST_SIGNING_KEY": signing_key}
    worker = start_ces(
        "worker",
        env={
            **shared,
            "CES_PROVIDER": "fixer",
            "CES_PROVIDER_URL": f"http://127.0.0.1:{provider_port}",
            "CES_PROVIDER_ACCESS_KEY": access_key,
            "CES_FETCH_MAX_ATTEMPTS": "1",
            "CES_FETCH_INTERVAL_SECONDS": "2",
        },
    )
    worker.wait_for_output("ces worker ready")
    port = free_port()
    gateway = start_ces(
        "gateway",
        env={**shared, "CES_GATEWAY_PORT": str(port), "CES_RATE_LIMIT_PER_SECOND": "0.01", "CES_RATE_LIMIT_BURST": "2"},
    )
    gateway.wait_for_output("Running on")
    owner = create_engine(
        Settings(migration_database_url=isolation.env["CES_MIGRATION_DATABASE_URL"]).migration_database_dsn
    )
    try:
        _, api_secret = create_key(PostgresApiKeyStore(owner), f"e2e-{uuid.uuid4().hex[:8]}", frozenset(Scope))
    finally:
        owner.dispose()

    async def convert_three_times() -> list[tuple[int, str | None]]:
        answers = []
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_secret}"}) as session:
            for _ in range(3):
                body = {
                    "base_currency": "EUR",
                    "target_currency": "USD",
                    "amount": "1.00",
                    "request_id": str(uuid.uuid4()),
                }
                async with session.post(f"http://127.0.0.1:{port}/v1/conversions", json=body) as response:
                    answers.append((response.status, response.headers.get("Retry-After")))
        return answers

    answers = asyncio.run(convert_three_times())
    assert [status for status, _ in answers] == [404, 404, 429]  # no rate yet: decided by the worker; then limited
    assert answers[2][1] is not None and int(answers[2][1]) >= 1
    poll(lambda: any(access_key in path for path in provider_paths), timeout=60, what="a fetch with the key")

    def failure_recorded() -> list[tuple[str, bytes, list[tuple[str, bytes]]]] | None:
        records = asyncio.run(every_record(settings, isolation.topic_prefix))
        seen = {topic.removeprefix(isolation.topic_prefix) for topic, _, _ in records}
        wanted = {topics.RATE_FETCH_FAILURES.name, topics.CONVERSION_REQUESTS.name, topics.CONVERSIONS_REJECTED.name}
        return records if wanted <= seen else None

    records = poll(failure_recorded, timeout=90, what="a RateFetchFailed, the requests and their rejections")
    assert isinstance(records, list)
    failure = next(v for t, v, _ in records if t.endswith(topics.RATE_FETCH_FAILURES.name))
    assert b"HTTP 500" in failure and b"***" in failure  # the echoed key was there, and was masked

    known = {access_key, signing_key, api_secret}
    known |= {
        v
        for role in ("admin", "worker", "gateway", "producer")
        for k, v in role_env(role).items()
        if k.endswith(("_PASSWORD", "_KEY"))
    }
    known.discard("")
    leaks = [
        (topic, f"...{secret[-4:]}")
        for topic, value, headers in records
        for secret in known
        if secret.encode() in value or any(secret.encode() in h for _, h in headers)
    ]
    assert leaks == []
    for log in tmp_path.glob("ces-*.log"):
        text = log.read_text(errors="replace")
        assert not [f"...{s[-4:]}" for s in known if s in text], log
