"""A worker and a gateway on a private schema and topic prefix holding the whole bundled ECB history, for the
time-series and dashboard benchmarks (`with history_stack() as stack: ...`). Needs the stack (`cesdev stack up`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from secrets import token_hex

from isolation import in_schema  # benchmarks/ sibling
from sqlalchemy import create_engine, text

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres import migrate
from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.adapters.providers.ecb_history import load_history
from ces.services.api_keys import Scope, create_key
from ces.settings import Settings
from cesdev.stack import acls, secrets


@dataclass(frozen=True)
class HistoryStack:
    url: str
    key: str
    gateway_pid: int
    rows: int
    topic_prefix: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def history_stack() -> Iterator[HistoryStack]:
    secrets.export_role_env("admin")
    settings = Settings()
    stack = secrets.load(settings)
    run = uuid.uuid4().hex[:8]
    schema, prefix, app_id = f"bench_{run}", f"bench-{run}-", f"bench-{run}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    connection = KafkaConnection.from_settings(settings)
    asyncio.run(ensure_topics(connection, partitions=settings.topic_partitions, prefix=prefix))
    asyncio.run(acls.grant_ces(connection, prefix=prefix, app_id=app_id))
    port = _free_port()
    env = {
        **os.environ,
        "CES_APP_ID": app_id,
        "CES_TOPIC_PREFIX": prefix,
        "CES_REDIS_KEY_PREFIX": f"bench-{run}:",
        "CES_DATABASE_URL": in_schema(settings.database_url, schema),
        "CES_MIGRATION_DATABASE_URL": in_schema(settings.migration_database_url, schema),
        "CES_PROVIDER_URL": "http://127.0.0.1:9",
        "CES_FETCH_MAX_ATTEMPTS": "1",
        "CES_WORKER_WEB_PORT": str(_free_port()),
        "CES_GATEWAY_PORT": str(port),
        "CES_LOG_LEVEL": "WARNING",
        "CES_REQUEST_SIGNING_KEY": token_hex(32),  # the stack's own key (role_env) wins when it has one
    }
    processes: list[subprocess.Popen[bytes]] = []
    owner = create_engine(in_schema(settings.migration_database_dsn, schema))
    try:
        for role in ("worker", "gateway"):
            role_env = secrets.role_env(stack, role) if stack is not None else {}
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "ces", role],
                    env={**env, **role_env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        history = load_history()
        expected = sum(len(r) for r in history.rates.values())
        subprocess.run(
            [sys.executable, "-m", "ces", "rates", "backfill", "--start", "1999-01-01"],
            env=env,
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 900
        count = 0
        while time.monotonic() < deadline and count < expected:
            with owner.connect() as conn:
                count = int(conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one())
            time.sleep(1)
        if count < expected:
            raise SystemExit(f"only {count} of {expected} rows projected")
        _, key = create_key(PostgresApiKeyStore(owner), f"bench-{run}", frozenset(Scope))
        yield HistoryStack(f"http://127.0.0.1:{port}", key, processes[1].pid, count, prefix)
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.wait(60)
        owner.dispose()
        admin = create_engine(settings.migration_database_dsn)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
