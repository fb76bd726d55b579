"""The gateway served over fakes, for unit tests of its HTTP behaviour (the real path is in tests/e2e).

A test names only the dependencies it looks at; the rest are the fakes of tests/fakes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ces.http.app import create_app
from ces.http.deps import Deps
from ces.settings import Settings
from tests.fakes import FakeAuditStore, FakeRateLookup, FakeRateReads, FakeRequester, all_ready, audited

Client = TestClient[web.Request, web.Application]


def fake_deps(settings: Settings, **overrides: Any) -> Deps:
    """Every dependency a fake (a requester that audits everything, no rates, all ready) unless overridden."""
    defaults: dict[str, Any] = {
        "audits": FakeAuditStore(),
        "rates": FakeRateReads(),
        "lookup": FakeRateLookup([]),
        "requester": FakeRequester(audited),
        "readiness": all_ready,
    }
    return Deps(settings=settings, **(defaults | overrides))


class Gateways:
    """Starts gateways on fake dependencies and closes every one it started (`close`, run by the fixture)."""

    def __init__(self) -> None:
        self._clients: list[Client] = []

    async def start(
        self,
        settings: Settings | None = None,
        *,
        configure: Callable[[web.Application], None] | None = None,
        **deps: Any,
    ) -> Client:
        """A started test client; `configure` sees the app before it serves (app keys such as heartbeats)."""
        settings = settings or Settings()
        served = fake_deps(settings, **deps)

        @asynccontextmanager
        async def open_deps() -> AsyncIterator[Deps]:
            yield served

        app = create_app(settings, open_deps)
        if configure is not None:
            configure(app)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
