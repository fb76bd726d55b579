"""Least privilege on the real services: the application role, Kafka's principals and ACLs, Redis's users."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg2
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.events import topics
from ces.settings import Settings
from cesdev.stack import secrets
from tests.support import cli, grant_acls, revoke_acls, settings_as

# The insert-only tables, each with a column to try to update.
IMMUTABLE = {
    "exchange_rate": "rate_value",
    "exchange_rate_revocation": "reason",
    "conversion_request": "outcome",
    "conversion_audit": "margin",
    "conversion_rejection": "reason",
}

stack_secrets = pytest.mark.skipif(
    secrets.load(Settings()) is None, reason="needs the local stack's principals (cesdev stack up)"
)


@pytest.mark.parametrize("table", IMMUTABLE)
def test_the_application_role_is_refused_by_permissions_not_triggers(pg_schema: tuple[Engine, str], table: str) -> None:
    engine, _ = pg_schema
    for statement in (
        f"UPDATE {table} SET {IMMUTABLE[table]} = {IMMUTABLE[table]}",
        f"DELETE FROM {table}",
        f"TRUNCATE {table} CASCADE",
        f"ALTER TABLE {table} DISABLE TRIGGER USER",
        f"DROP TABLE {table}",
    ):
        with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
            conn.execute(text(statement))
        message = str(refused.value.orig)
        assert "permission denied" in message or "must be owner" in message, (statement, message)
        assert "insert-only" not in message  # refused before any trigger could run


def test_the_application_role_owns_nothing_and_cannot_create(pg_schema: tuple[Engine, str]) -> None:
    engine, schema = pg_schema
    with engine.connect() as conn:
        owned = conn.execute(
            text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = current_user")
        ).scalar_one()
        superuser = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
    assert owned == 0 and superuser is False
    with pytest.raises(DBAPIError, match="permission denied"), engine.begin() as conn:
        conn.execute(text(f'CREATE TABLE "{schema}".intruder (x int)'))


def test_postgres_wants_a_password_even_from_the_superuser(settings: Settings) -> None:
    url = make_url(settings.database_url)
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host=url.host, port=url.port, user="postgres", dbname="postgres", connect_timeout=3)


@pytest.fixture
async def deployment(settings: Settings, unique: str) -> AsyncIterator[str]:
    """CES's topics under a test prefix, with the ACLs of that prefix; both removed at teardown."""
    prefix, app_id = f"test-sec-{unique}-", f"test-sec-{unique}"
    admin = KafkaConnection.from_settings(settings)
    await ensure_topics(admin, partitions=1, prefix=prefix)
    await grant_acls(settings, prefix=prefix, app_id=app_id)
    yield prefix
    from aiokafka.admin import AIOKafkaAdminClient

    await revoke_acls(settings, prefix=prefix, app_id=app_id)
    client = AIOKafkaAdminClient(**admin.kwargs())
    await client.start()
    try:
        await client.delete_topics([prefix + spec.name for spec in topics.ALL_TOPICS])
    finally:
        await client.close()


async def send(connection: KafkaConnection, topic: str) -> None:
    producer = AIOKafkaProducer(**connection.kwargs(), request_timeout_ms=5000, enable_idempotence=False)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=b"k"), timeout=15)
    finally:
        await producer.stop()


@stack_secrets
@pytest.mark.parametrize("role", ["producer", "gateway"])
async def test_only_the_worker_writes_decisions_and_rates(settings: Settings, deployment: str, role: str) -> None:
    connection = KafkaConnection.from_settings(settings_as(role, settings))
    await send(connection, deployment + topics.CONVERSION_REQUESTS.name)  # what it is there for
    for forbidden in (topics.CONVERSIONS_AUDITED, topics.RATES_FETCHED, topics.DEAD_LETTERS):
        with pytest.raises(TopicAuthorizationFailedError):
            await send(connection, deployment + forbidden.name)
    worker = KafkaConnection.from_settings(settings_as("worker", settings))
    await send(worker, deployment + topics.CONVERSIONS_AUDITED.name)
    await send(worker, deployment + topics.RATES_FETCHED.name)


async def read_from_end(connection: KafkaConnection, topic: str, timeout: float = 15) -> int:
    """What the gateway's rate feed does: assign partition 0 without a group and find the end offset."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**connection.kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        position = await asyncio.wait_for(consumer.position(partition), timeout=timeout)
        await asyncio.wait_for(consumer.getmany(partition, timeout_ms=500), timeout=timeout)
        return int(position)
    finally:
        await consumer.stop()


@stack_secrets
async def test_the_gateway_reads_new_rates_and_the_producer_may_not(settings: Settings, deployment: str) -> None:
    rates = deployment + topics.RATES_FETCHED.name
    worker = KafkaConnection.from_settings(settings_as("worker", settings))
    await send(worker, rates)
    gateway = KafkaConnection.from_settings(settings_as("gateway", settings))
    assert await read_from_end(gateway, rates) == 1
    producer = KafkaConnection.from_settings(settings_as("producer", settings))
    # aiokafka keeps asking for the metadata it is refused (logging "not authorized") instead of raising.
    with pytest.raises((TopicAuthorizationFailedError, TimeoutError)):
        await read_from_end(producer, rates, timeout=8)


@stack_secrets
async def test_an_anonymous_or_wrongly_authenticated_client_is_refused(settings: Settings, deployment: str) -> None:
    anonymous = KafkaConnection(bootstrap=settings.kafka_bootstrap)  # PLAINTEXT on a SASL listener
    impostor = KafkaConnection.from_settings(settings.model_copy(update={"kafka_username": "ces-worker"}))
    for topic in (topics.CONVERSIONS_AUDITED, topics.RATES_FETCHED):
        with pytest.raises(KafkaError):
            await send(anonymous, deployment + topic.name)
        with pytest.raises(KafkaError):  # the admin's password is not the worker's
            await send(impostor, deployment + topic.name)


@stack_secrets
async def test_redis_application_user_runs_only_the_cache_commands(settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis_dsn)
    try:
        for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("SET", "k", "v")):
            with pytest.raises(aioredis.ResponseError, match="permission"):
                await client.execute_command(*command)
    finally:
        await client.aclose()
    anonymous = aioredis.Redis.from_url(settings.redis_url.replace("ces@", ""))
    try:
        with pytest.raises(aioredis.AuthenticationError):
            await anonymous.ping()
    finally:
        await anonymous.aclose()


def test_cli_errors_never_print_a_password(settings: Settings) -> None:
    password = "not-the-password-4b1d"  # a known wrong secret to look for
    env = {
        **os.environ,
        "CES_MIGRATION_DATABASE_URL": settings.migration_database_url.replace("ces_owner@", f"ces_owner:{password}@"),
        "CES_MIGRATION_DATABASE_PASSWORD": "",
    }
    result = subprocess.run(cli("db", "upgrade"), capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert "password authentication failed" in result.stdout + result.stderr
    assert password not in result.stdout + result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres-user layout applies when the stack runs as root")
def test_the_stack_changes_no_permission_outside_its_directory(settings: Settings) -> None:
    """A stack dir inside a private (0700) directory: PostgreSQL must work without widening any ancestor."""
    from cesdev.stack.postgres import Postgres
    from tests.e2e.conftest import free_port

    private = Path(tempfile.mkdtemp(prefix="ces-perm-"))
    stack_dir = private / "checkout" / ".stack"
    stack_dir.mkdir(parents=True)
    ancestors = [stack_dir.parent, *stack_dir.parent.parents]
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in ancestors}
    port = free_port()
    local = Settings(stack_dir=stack_dir, database_url=f"postgresql+psycopg2://ces_app@127.0.0.1:{port}/ces")
    postgres = Postgres(local)
    try:
        postgres.start()
        assert postgres.answers()
        assert {p: stat.S_IMODE(p.stat().st_mode) for p in ancestors} == before
        assert not postgres.data_dir.is_relative_to(private)
    finally:
        postgres.stop()
        subprocess.run(["rm", "-rf", str(postgres.home), str(private)], check=False)


@stack_secrets
async def test_the_acls_a_test_grants_are_revoked_exactly(settings: Settings, unique: str) -> None:
    """What `grant_acls` makes for a prefix, `revoke_acls` removes (every fixture that grants calls it at
    teardown), and nothing of another prefix goes with it."""
    from cesdev.stack import acls

    admin = KafkaConnection.from_settings(settings)
    mine, other = (f"test-acl-{unique}-{n}-" for n in ("a", "b"))
    await grant_acls(settings, prefix=mine, app_id=mine.rstrip("-"))
    await grant_acls(settings, prefix=other, app_id=other.rstrip("-"))
    try:

        def named(found: list[acls.Acl], prefix: str) -> set[acls.Acl]:
            return {acl for acl in found if acl.name.startswith(prefix.rstrip("-"))}

        expected = set(acls.own_acls(mine, mine.rstrip("-")))
        shared = set(acls.ces_acls(mine, mine.rstrip("-"))) - expected
        # What every deployment shares (the cluster's IDEMPOTENT_WRITE, the producer's groups) is not its own.
        assert {(a.resource_type, a.name) for a in shared} == {
            (acls.CLUSTER, "kafka-cluster"),
            (acls.GROUP, "ces-producer-"),
        }
        assert named(await acls.describe(admin), mine) == expected
        assert await revoke_acls(settings, prefix=mine, app_id=mine.rstrip("-")) == len(expected)
        after = await acls.describe(admin)
        assert named(after, mine) == set()
        assert len(named(after, other)) == len(expected)  # the other deployment keeps its ACLs
        assert shared <= set(after)  # and so does everybody else
    finally:
        await revoke_acls(settings, prefix=other, app_id=other.rstrip("-"))
