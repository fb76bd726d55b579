"""The rates dashboard: its static page and assets (package data, served under a strict CSP), and the two reads
it needs besides the rate routes: `GET /v1/conversions` (newest first) and `GET /v1/rate-rows/{rate_id}`.

The page is open (it holds no data); every call it makes sends the API key typed into it.
"""

from __future__ import annotations

import asyncio
import importlib.resources
from functools import cache

from aiohttp import web

from ces.http.deps import DEPS
from ces.http.problems import path_uuid, problem
from ces.http.schemas import audit_json, leg_out

MAX_RECENT = 100
UPLOT_VERSION = "1.6.32"

# Self only; no inline script or style element, no eval, no framing. uPlot sizes its elements through the
# CSSOM (element.style), which a style-src without 'unsafe-inline' allows.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

# name under /dashboard/static/ -> content type. Only these files are served (no path from the request
# ever reaches the file system).
ASSETS = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot.LICENSE": "text/plain",
}


@cache
def _read(name: str) -> bytes:
    return importlib.resources.files("ces.http").joinpath("static", *name.split("/")).read_bytes()


async def dashboard_page(request: web.Request) -> web.Response:
    return web.Response(
        body=_read("dashboard.html"),
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def dashboard_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        return problem("not_found", "no such dashboard file")
    return web.Response(
        body=_read(name),
        content_type=content_type,
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard")


async def recent_conversions(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return problem("invalid_request", "limit must be an integer")
    if not 1 <= limit <= MAX_RECENT:
        return problem("invalid_request", f"limit must be between 1 and {MAX_RECENT}")
    audits = await asyncio.to_thread(deps.audits.recent, limit)
    return web.json_response({"conversions": [audit_json(a) for a in audits]})


async def get_rate_row(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    rate_id = path_uuid(request, "rate_id", "rate row")
    if isinstance(rate_id, web.Response):
        return rate_id
    found = await asyncio.to_thread(deps.rates.find, rate_id)
    if found is None:
        return problem("not_found", f"no rate row {rate_id}")
    rate, revocation = found
    body = leg_out(rate).json_body()
    body["revoked"] = revocation is not None
    return web.json_response(body)


DASHBOARD_ROUTES = [
    web.get("/", root),
    web.get("/dashboard", dashboard_page),
    web.get("/dashboard/static/{name:.+}", dashboard_asset),
    web.get("/v1/conversions", recent_conversions),
    web.get("/v1/rate-rows/{rate_id}", get_rate_row),
]
