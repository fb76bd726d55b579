"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a worker and a gateway that
hold the whole bundled ECB history, all private to this suite (schema, topics, key prefix, API key), loaded
once per session: `ces rates backfill` through Kafka into the worker, as `benchmarks/backfill.py` does.

Without chromium the tests are skipped on a workstation and FAIL in CI (`CI=true`): a browser suite that
silently skips proves nothing. `.ci/run` installs chromium from Debian when it runs as root.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ces.adapters.kafka.admin import ensure_topics
from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.postgres import migrate
from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.adapters.providers.ecb_history import load_history
from ces.services.api_keys import Scope, create_key
from ces.settings import Settings
from tests.e2e.conftest import RunningProcess, free_port, in_schema, poll
from tests.support import cli, drop_schema, grant_acls, revoke_acls, role_env

pytestmark = pytest.mark.browser

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    found = os.environ.get("CES_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    return found if found and Path(found).exists() else None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        message = "chromium is not installed (apt-get install -y chromium; or set CES_CHROMIUM)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: the browser suite must run in CI", pytrace=False)
        pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)
    return path


@dataclass(frozen=True)
class Dashboard:
    url: str
    key: str
    topic_prefix: str
    settings: Settings
    days_with_usd: int


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A worker and a gateway on a private schema and topic prefix, the full history backfilled through Kafka."""
    require_chromium()
    settings = Settings()
    unique = uuid.uuid4().hex[:10]
    schema = f"browser_{unique}"
    prefix, app_id = f"browser-{unique}-", f"browser-{unique}"
    migrate.upgrade(settings.migration_database_dsn, schema=schema)
    env = {
        **os.environ,
        "CES_APP_ID": app_id,
        "CES_TOPIC_PREFIX": prefix,
        "CES_REDIS_KEY_PREFIX": f"browser-{unique}:",
        "CES_DATABASE_URL": in_schema(settings.database_url, schema),
        "CES_MIGRATION_DATABASE_URL": in_schema(settings.migration_database_url, schema),
        "CES_PROVIDER_URL": "http://127.0.0.1:9",  # no live fetches: the rates are the backfilled history
        "CES_FETCH_MAX_ATTEMPTS": "1",
        "CES_WORKER_WEB_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        # The gateway signs requests and the worker checks them (the stack's own key wins when it has one).
        "CES_REQUEST_SIGNING_KEY": secrets.token_hex(32),
    }
    connection = KafkaConnection.from_settings(settings)
    asyncio.run(ensure_topics(connection, partitions=settings.topic_partitions, prefix=prefix))
    asyncio.run(grant_acls(settings, prefix=prefix, app_id=app_id))
    logs = tmp_path_factory.mktemp("browser")
    started: list[RunningProcess] = []

    def start(role: str, *args: str, **extra: str) -> RunningProcess:
        log = logs / f"{role}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cli(role, *args), stdout=out, stderr=subprocess.STDOUT, env={**env, **role_env(role), **extra}
            )
        started.append(RunningProcess(proc, log))
        return started[-1]

    engine = create_engine(in_schema(settings.database_dsn, schema))
    owner = create_engine(in_schema(settings.migration_database_dsn, schema))
    try:
        start("worker").wait_for_output("ces worker ready")
        port = free_port()
        start("gateway", CES_GATEWAY_PORT=str(port)).wait_for_output("Running on")
        history = load_history()
        expected = sum(len(rates) for rates in history.rates.values())
        backfill = subprocess.run(
            cli("rates", "backfill", "--start", "1999-01-01"), env=env, capture_output=True, text=True, timeout=600
        )
        assert backfill.returncode == 0, backfill.stderr[-2000:]

        def projected() -> bool:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM exchange_rate")).scalar_one()) >= expected

        poll(projected, timeout=600, interval=1.0, what=f"{expected} backfilled rows")
        _, key = create_key(PostgresApiKeyStore(owner), f"browser-{unique}", frozenset(Scope))
        days_with_usd = sum(1 for rates in history.rates.values() if "USD" in rates)
        yield Dashboard(f"http://127.0.0.1:{port}", key, prefix, settings, days_with_usd)
    finally:
        for running in reversed(started):
            running.terminate()
        engine.dispose()
        owner.dispose()
        drop_schema(settings.migration_database_dsn, schema)
        asyncio.run(revoke_acls(settings, prefix=prefix, app_id=app_id))


@pytest.fixture(scope="session")
def browser(dashboard: Dashboard) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=require_chromium(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@dataclass
class Page:
    """A fresh page with every console error and uncaught exception recorded."""

    page: Any
    errors: list[str]


@pytest.fixture
def page(browser: Any, dashboard: Dashboard) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield Page(page, errors)
    context.close()
