"""SASL_SSL, exercised once: a private broker with the stack's optional TLS listener, CES clients trusting its CA."""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import SecretStr

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.events import topics
from ces.settings import Settings
from cesdev.stack import secrets
from cesdev.stack.kafka import Kafka

SHARED_LIB = Settings().stack_dir.resolve() / "kafka" / "lib"

pytestmark = pytest.mark.skipif(
    shutil.which("java") is None or shutil.which("openssl") is None or not (SHARED_LIB / ".pom-sha256").exists(),
    reason="needs java, openssl and the local stack's Kafka jars (cesdev stack up once)",
)


def two_free_ports() -> int:
    """A port p with p+1 free too (the broker's controller listener is the client port + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kafka, int]]:
    """A private single-node broker (this test's own stack dir, the shared jars) with a SASL_SSL listener."""
    stack_dir = tmp_path_factory.mktemp("tls-stack") / ".stack"
    (stack_dir / "kafka").mkdir(parents=True)
    (stack_dir / "kafka" / "lib").symlink_to(SHARED_LIB)  # the jars are read-only input: no second download
    port, tls_port = two_free_ports(), two_free_ports()
    kafka = Kafka(Settings(stack_dir=stack_dir, kafka_bootstrap=f"127.0.0.1:{port}"), tls_port=tls_port)
    try:
        kafka.start()
        yield kafka, tls_port
    finally:
        kafka.stop()


def over_tls(kafka: Kafka, tls_port: int, user: str, *, cafile: Path | None) -> KafkaConnection:
    stack = secrets.load(kafka.settings)
    assert stack is not None
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{tls_port}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_username=user,
        kafka_password=SecretStr(stack.kafka[user]),
        kafka_ssl_cafile=cafile,
    )
    return KafkaConnection.from_settings(settings)  # CES_KAFKA_SSL_CAFILE's path into every client


async def test_a_request_goes_through_the_sasl_ssl_listener_under_the_acls(tls_broker: tuple[Kafka, int]) -> None:
    kafka, tls_port = tls_broker
    admin = over_tls(kafka, tls_port, "admin", cafile=kafka.ca_file)
    await ensure_topics(admin, partitions=1)
    topic = topics.CONVERSION_REQUESTS.name
    value = f'{{"request_id": "{uuid.uuid4()}"}}'.encode()

    producer = AIOKafkaProducer(**over_tls(kafka, tls_port, "ces-gateway", cafile=kafka.ca_file).kwargs())
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), timeout=30)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        **over_tls(kafka, tls_port, "ces-worker", cafile=kafka.ca_file).kwargs(),
        group_id="ces-conversions",  # the worker's own group: READ granted by the ACLs, over TLS as over plaintext
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    assert got.value == value

    # The gateway may still not write a decision: the ACLs hold on this listener too.
    refused = AIOKafkaProducer(**over_tls(kafka, tls_port, "ces-gateway", cafile=kafka.ca_file).kwargs())
    await refused.start()
    try:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(refused.send_and_wait(topics.CONVERSIONS_AUDITED.name, b"{}"), timeout=30)
    finally:
        await refused.stop()


async def test_a_client_that_does_not_trust_the_stacks_ca_cannot_connect(tls_broker: tuple[Kafka, int]) -> None:
    kafka, tls_port = tls_broker
    untrusting = AIOKafkaProducer(**over_tls(kafka, tls_port, "ces-gateway", cafile=None).kwargs())
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(untrusting.start(), timeout=30)
    await untrusting.stop()
    plaintext = KafkaConnection(
        bootstrap=f"127.0.0.1:{tls_port}", security_protocol="SASL_PLAINTEXT", username="admin",
        password=SecretStr(secrets.load(kafka.settings).kafka["admin"]),  # type: ignore[union-attr]
    )  # fmt: skip
    client = AIOKafkaProducer(**plaintext.kwargs(), request_timeout_ms=5000)
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await asyncio.wait_for(client.start(), timeout=20)
    await client.stop()
