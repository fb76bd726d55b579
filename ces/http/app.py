"""The gateway's aiohttp application: routes, middlewares, and the dependencies' lifetime.

`create_app` takes what opens and closes the dependencies (`OpenDeps`): `ces.bootstrap.gateway` passes the
real adapters, the handler tests pass fakes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web

from ces.http.auth import auth_middleware
from ces.http.dashboard import DASHBOARD_ROUTES
from ces.http.deps import DEPS, Deps
from ces.http.live import LIVE_ROUTES
from ces.http.problems import Handler, problems_middleware
from ces.http.query_params import query_params_middleware
from ces.http.quotes import QUOTE_ROUTES
from ces.http.routes import ROUTES
from ces.http.series import SERIES_ROUTES
from ces.metrics import HTTP_REQUESTS
from ces.settings import Settings

OpenDeps = Callable[[], AbstractAsyncContextManager[Deps]]
ALL_ROUTES = [*ROUTES, *QUOTE_ROUTES, *SERIES_ROUTES, *LIVE_ROUTES, *DASHBOARD_ROUTES]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    HTTP_REQUESTS.labels(request.method, route, str(response.status)).observe(time.perf_counter() - started)
    return response


def create_app(settings: Settings, open_deps: OpenDeps) -> web.Application:
    app = web.Application(
        client_max_size=settings.gateway_max_body_bytes,
        middlewares=[metrics_middleware, problems_middleware, auth_middleware, query_params_middleware],
    )

    async def deps_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_deps() as deps:
            app[DEPS] = deps
            yield

    app.cleanup_ctx.append(deps_ctx)
    app.add_routes(ALL_ROUTES)
    return app
