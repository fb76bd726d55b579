"""Helpers shared by the integration and e2e tests (real services only)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from ces.adapters.kafka.connection import kafka_kwargs
from ces.settings import Settings


def role_env(role: str, settings: Settings | None = None) -> dict[str, str]:
    """The CES_* credentials of one principal of the local stack (worker, gateway, producer, admin), for a
    process a test starts as it; empty when the stack has no secrets file (credentials come from CES_*)."""
    from cesdev.stack import secrets

    stack = secrets.load(settings or Settings())
    return secrets.role_env(stack, role) if stack is not None else {}


def settings_as(role: str, settings: Settings) -> Settings:
    """`settings` with the credentials of `role` instead of the tests' admin ones."""
    env = role_env(role, settings)
    if not env:
        return settings
    update: dict[str, object] = {"kafka_username": env["CES_KAFKA_USERNAME"]}
    update["kafka_password"] = SecretStr(env["CES_KAFKA_PASSWORD"])
    if "CES_MIGRATION_DATABASE_PASSWORD" not in env:
        update["migration_database_password"] = SecretStr("")
    return settings.model_copy(update=update)


def redis_admin_dsn(settings: Settings) -> str:
    """Redis as its `default` user (every command): for test clean-up that scans keys, which `ces` may not."""
    from urllib.parse import urlsplit

    from cesdev.stack import secrets

    stack = secrets.load(settings)
    if stack is None:
        return settings.redis_dsn
    parts = urlsplit(settings.redis_url)
    return f"redis://:{stack.redis[secrets.REDIS_ADMIN]}@{parts.hostname}:{parts.port or 6379}{parts.path}"


async def grant_acls(settings: Settings, *, prefix: str, app_id: str) -> None:
    """As the admin: the ACLs of CES's principals for one test's topic prefix and app id."""
    from ces.adapters.kafka.connection import KafkaConnection
    from cesdev.stack import acls

    await acls.grant_ces(KafkaConnection.from_settings(settings), prefix=prefix, app_id=app_id)


async def revoke_acls(settings: Settings, *, prefix: str, app_id: str) -> int:
    """As the admin: remove what `grant_acls` made (every fixture that grants revokes at its teardown)."""
    from ces.adapters.kafka.connection import KafkaConnection
    from cesdev.stack import acls

    return await acls.revoke_ces(KafkaConnection.from_settings(settings), prefix=prefix, app_id=app_id)


def drop_schema(database_url: str, schema: str) -> None:
    admin = create_engine(database_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Publish (key, value) pairs as an outside service would, and wait for every acknowledgement."""
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), linger_ms=5, max_batch_size=256 * 1024)
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


# Everything that makes a schema's shape beyond its columns: constraints (with whether they are validated),
# indexes and user triggers, each by name and definition, with the schema's own name taken out.
_CATALOG = """
SELECT 'constraint', t.relname, c.conname,
    pg_get_constraintdef(c.oid) || CASE WHEN c.convalidated THEN '' ELSE ' NOT VALID' END
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid WHERE t.relnamespace = to_regnamespace(:s)
UNION ALL
SELECT 'index', t.relname, i.relname, pg_get_indexdef(i.oid) || CASE WHEN x.indisvalid THEN '' ELSE ' INVALID' END
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
WHERE t.relnamespace = to_regnamespace(:s)
UNION ALL
SELECT 'trigger', t.relname, g.tgname, pg_get_triggerdef(g.oid) || ' ' || g.tgenabled::text
FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid WHERE t.relnamespace = to_regnamespace(:s) AND NOT g.tgisinternal
UNION ALL
SELECT 'column', t.relname, a.attname,
    format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' ' || a.attnum::text
FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid
WHERE t.relnamespace = to_regnamespace(:s) AND t.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2, 3
"""


def schema_catalog(database_url: str, schema: str, *, leave_out: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """The shape of `schema` from pg_catalog (see `_CATALOG`), without the tables in `leave_out`."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(_CATALOG), {"s": schema}).all()
    finally:
        engine.dispose()
    return [
        (kind, table, name, definition.replace(f"{schema}.", "<schema>."))
        for kind, table, name, definition in rows
        if table not in leave_out
    ]


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str, deadline: float = 5.0) -> None:
    """Poll until `check` holds, yielding to the loop between polls: for what a task on the test's own loop does
    (the suites' blocking `poll` / `poll_until` sleep the thread, and would starve the very task waited for)."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < end, f"not within {deadline}s: {what}"
        await asyncio.sleep(0.01)
