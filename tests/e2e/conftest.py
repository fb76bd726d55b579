"""End-to-end: CES processes started as a user starts them, each run isolated by app id and topic prefix."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres import migrate
from ces.settings import Settings
from tests.support import cli, drop_schema, grant_acls, revoke_acls, role_env

pytestmark = pytest.mark.e2e


class RunningProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, marker: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen within {timeout}s:\n{self.output()[-3000:]}")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


StartCes = Callable[..., RunningProcess]
# Secrets a test may hand a CES process through the environment: none may appear in what it prints.
SECRET_VARIABLES = ("CES_PROVIDER_ACCESS_KEY", "CES_REQUEST_SIGNING_KEY", "CES_REQUEST_SIGNING_KEYS_PREVIOUS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Isolation:
    """Everything a CES process shares with others, made private to one test."""

    env: dict[str, str]
    schema: str
    engine: Engine
    topic_prefix: str
    redis_prefix: str


def in_schema(url: str, schema: str) -> str:
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)


@pytest.fixture
def isolation(settings: Settings, unique: str) -> Iterator[Isolation]:
    schema = f"e2e_{unique}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    env = {
        "CES_APP_ID": f"e2e-{unique}",
        "CES_TOPIC_PREFIX": f"e2e-{unique}-",
        "CES_REDIS_KEY_PREFIX": f"e2e-{unique}:",
        # Both roles' URLs on the test's schema; the passwords stay in CES_*_PASSWORD, never in the URLs.
        "CES_DATABASE_URL": in_schema(settings.database_url, schema),
        "CES_MIGRATION_DATABASE_URL": in_schema(settings.migration_database_url, schema),
    }
    engine = create_engine(in_schema(settings.database_dsn, schema))
    try:
        yield Isolation(env, schema, engine, env["CES_TOPIC_PREFIX"], env["CES_REDIS_KEY_PREFIX"])
    finally:
        engine.dispose()
        drop_schema(settings.migration_database_dsn, schema)


@pytest.fixture
def start_ces(tmp_path: Path, unique: str) -> Iterator[StartCes]:
    """Start `ces <args>` as a subprocess with an isolated app id and topic prefix."""
    started: list[RunningProcess] = []
    signing_key = secrets.token_hex(32)
    handed: set[str] = set()  # every secret given to a process through its environment
    granted: set[tuple[str, str]] = set()  # (topic prefix, app id) whose ACLs this test created

    def start(*args: str, env: dict[str, str] | None = None) -> RunningProcess:
        log = tmp_path / f"ces-{len(started)}.log"
        full_env = {
            **os.environ,
            "CES_APP_ID": f"e2e-{unique}",
            "CES_TOPIC_PREFIX": f"e2e-{unique}-",
            "CES_WORKER_WEB_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        if args and args[0] in ("worker", "gateway"):
            # As its own principal, with the ACLs of this test's prefix and app id: a missing ACL fails here.
            # The topics exist before the process starts, as `cesdev up` makes them: the gateway may not create.
            full_env.update(role_env(args[0]))
            # The gateway signs its requests and the worker checks them: both of one test share one key (the
            # stack's own when its secrets file has one).
            full_env.setdefault("CES_REQUEST_SIGNING_KEY", signing_key)
            admin, prefix = Settings(), full_env["CES_TOPIC_PREFIX"]
            partitions = int(full_env.get("CES_TOPIC_PARTITIONS", admin.topic_partitions))
            asyncio.run(ensure_topics(KafkaConnection.from_settings(admin), partitions=partitions, prefix=prefix))
            asyncio.run(grant_acls(admin, prefix=prefix, app_id=full_env["CES_APP_ID"]))
            granted.add((prefix, full_env["CES_APP_ID"]))
        handed.update(v for k, v in full_env.items() if k in SECRET_VARIABLES or k.endswith("_PASSWORD"))
        with open(log, "wb") as out:
            proc = subprocess.Popen(cli(*args), stdout=out, stderr=subprocess.STDOUT, env=full_env)
        running = RunningProcess(proc, log)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.terminate()
    for prefix, app_id in granted:  # ACLs of a test's prefix would otherwise outlive its topics
        asyncio.run(revoke_acls(Settings(), prefix=prefix, app_id=app_id))
    # Every process of every end-to-end run had passwords (its principal's, the database's, Redis's): none
    # may appear in anything it printed or logged (docs/security.md).
    known = [value for key, value in role_env("admin").items() if key.endswith("_PASSWORD")]
    known += [
        value
        for role in ("worker", "gateway")
        for key, value in role_env(role).items()
        if key.endswith("PASSWORD") or key == "CES_REQUEST_SIGNING_KEY"
    ]
    known += [signing_key, *handed]
    for running in started:
        output = running.output()
        leaked = [f"...{secret[-4:]}" for secret in set(known) if secret and secret in output]
        assert not leaked, f"{running.log} contains passwords ending {leaked}"


@pytest.fixture
def worker_env(isolation: Isolation) -> dict[str, str]:
    """A worker's environment without live fetches (an unreachable provider, one attempt): tests seed rates."""
    return {**isolation.env, "CES_PROVIDER_URL": "http://127.0.0.1:9", "CES_FETCH_MAX_ATTEMPTS": "1"}


@pytest.fixture
def running(
    start_ces: StartCes, isolation: Isolation, settings: Settings, worker_env: dict[str, str]
) -> RunningProcess:
    """A worker that is ready, with tests.e2e.seeded's rates projected."""
    from tests.e2e.seeded import seed_rates  # seeded imports this module (Isolation, poll)

    worker = start_ces("worker", env=worker_env)
    worker.wait_for_output("ces worker ready")
    seed_rates(settings, isolation)
    return worker


def poll(check: Callable[[], object], *, timeout: float = 60.0, interval: float = 0.2, what: str = "") -> object:
    """Call `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last value {last!r}")
