"""The gateway's aiohttp application: routes, middlewares, and the dependencies' lifetime.

`create_app` takes what opens and closes the dependencies (`OpenDeps`): `ces.bootstrap.gateway` passes the
real adapters, the handler tests pass fakes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web
from prometheus_client import Histogram

from ces.http.auth import authorize
from ces.http.dashboard import DASHBOARD_ROUTES
from ces.http.deps import DEPS, Deps
from ces.http.live import LIVE_ROUTES
from ces.http.problems import Handler, problem_for
from ces.http.query_params import query_problem
from ces.http.quotes import QUOTE_ROUTES
from ces.http.routes import ROUTES
from ces.http.series import SERIES_ROUTES
from ces.metrics import HTTP_REQUESTS
from ces.settings import Settings

OpenDeps = Callable[[], AbstractAsyncContextManager[Deps]]
ALL_ROUTES = [*ROUTES, *QUOTE_ROUTES, *SERIES_ROUTES, *LIVE_ROUTES, *DASHBOARD_ROUTES]


# (method, route, status) -> its histogram child: `labels()` takes a lock and formats the labels on every call.
_OBSERVERS: dict[tuple[str, str, int], Histogram] = {}
_MAX_OBSERVERS = 4096  # a bound anyway: the parser refuses methods it does not know (400), so few reach here


def _observer(method: str, route: str, status: int) -> Histogram:
    observer = _OBSERVERS.get((method, route, status))
    if observer is None:
        if len(_OBSERVERS) >= _MAX_OBSERVERS:
            _OBSERVERS.clear()
        observer = _OBSERVERS[(method, route, status)] = HTTP_REQUESTS.labels(method, route, str(status))
    return observer


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request's cross-cutting work, in one middleware (four cost ~8% of the gateway's CPU per
    request, docs/http.md), in the order they had as four: the metrics see every answer; any failure below
    becomes problem+json (`problem_for`); the API key, its scope and its rate limit (`authorize`); the query
    parameters against the contract (`query_problem`); then the handler."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else None
    try:
        refused = await authorize(request, canonical)
        if refused is None:
            refused = query_problem(request, canonical)
        response = refused if refused is not None else await handler(request)
    except Exception as exc:
        response = problem_for(request, exc)
    route = canonical if canonical is not None else "unmatched"
    _observer(request.method, route, response.status).observe(time.perf_counter() - started)
    return response


def create_app(settings: Settings, open_deps: OpenDeps) -> web.Application:
    app = web.Application(
        client_max_size=settings.gateway_max_body_bytes,
        middlewares=[gateway_middleware],
    )

    async def deps_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_deps() as deps:
            app[DEPS] = deps
            yield

    app.cleanup_ctx.append(deps_ctx)
    app.add_routes(ALL_ROUTES)
    return app
