"""Gateway handlers: parse, call one service, respond. No business logic lives here."""

from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ces.domain.money import code_as_typed, currencies, is_currency_code
from ces.events.base import rfc3339, utc_now
from ces.events.conversions import ConversionAudited
from ces.events.registry import UndecodableEvent, parse_json_object
from ces.http.auth import API_KEY
from ces.http.batch import BATCH_ROUTES
from ces.http.conversion_input import Refusal, read_request
from ces.http.deps import DEPS, Deps
from ces.http.openapi import docs_html, openapi_document
from ces.http.problems import path_uuid, problem
from ces.http.schemas import (
    Currencies,
    CurrencyOut,
    HistoryItem,
    RateHistory,
    RatesTable,
    Status,
    audit_body,
    leg_out,
    rate_json,
    rate_out,
    rejection_json,
)
from ces.services.conversion_requests import BackendUnavailable, IdempotencyConflict, ResultTimeout
from ces.services.ports import TooManyPending

MAX_HISTORY_PAGE = 5000


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=lambda o: json.dumps(o))


def _audit(audit: ConversionAudited, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=audit_body(audit), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


def _sends_json(request: web.Request) -> bool:
    """`request.content_type == "application/json"`, without parsing the header when it is exactly that (what
    nearly every client sends): aiohttp parses it into a type and a parameter mapping on each request."""
    return request.headers.get("Content-Type") == "application/json" or request.content_type == "application/json"


@functools.cache
def _skew(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def post_conversion(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not _sends_json(request):
        return problem("invalid_request", "send the body as application/json")
    try:
        payload = parse_json_object(await request.read())
    except UndecodableEvent as exc:
        return problem("malformed_json", f"the body must be a JSON object ({exc.detail})")
    caller = request.get(API_KEY)
    wanted = read_request(
        payload,
        idempotency_key=request.headers.get("Idempotency-Key"),
        max_amount=deps.settings.max_amount,
        max_clock_skew=_skew(deps.settings.max_clock_skew_seconds),
        requested_by=caller.id if caller else None,
    )
    if isinstance(wanted, Refusal):
        return problem(wanted.code, wanted.detail, **wanted.extra)
    request_id = str(wanted.request_id)
    try:
        decision, replayed = await deps.requester.convert(wanted)
    except TooManyPending:
        return problem("overloaded", f"more than {deps.settings.gateway_max_pending} conversions in flight")
    except BackendUnavailable as exc:
        return problem("unavailable", str(exc))
    except ResultTimeout:
        return problem(
            "result_timeout",
            f"no result within {deps.settings.gateway_timeout_seconds:g}s; retry with the same request_id",
            request_id=request_id,
        )
    except IdempotencyConflict as exc:
        return problem("idempotency_conflict", str(exc), request_id=request_id)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if isinstance(decision, ConversionAudited):
        headers["Location"] = f"/v1/conversions/{decision.audit_id}"
        return _audit(decision, status=201, headers=headers)
    code = decision.reason.value
    return problem(code, decision.message, request_id=request_id, rejected_at=rfc3339(decision.rejected_at))


async def get_conversion(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    audit_id = path_uuid(request, "audit_id", "conversion")
    if isinstance(audit_id, web.Response):
        return audit_id
    audit = await asyncio.to_thread(deps.audits.get_audit, audit_id)
    if audit is None:
        return problem("not_found", f"no conversion {audit_id}")
    return _audit(audit)


async def get_conversion_request(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    request_id = path_uuid(request, "request_id", "request")
    if isinstance(request_id, web.Response):
        return request_id
    decision = (await asyncio.to_thread(deps.audits.get, [request_id])).get(request_id)
    if decision is None:
        return problem("not_found", f"no decision for request {request_id} (yet)")
    if isinstance(decision, ConversionAudited):
        return _audit(decision)
    return _json(rejection_json(decision))


def _pair(request: web.Request) -> tuple[str, str] | web.Response:
    base, target = code_as_typed(request.match_info["base"]), code_as_typed(request.match_info["target"])
    for code in (base, target):
        if not is_currency_code(code):
            return problem("unknown_currency", f"{code[:16]!r} is not an ISO 4217 currency CES converts")
    if base == target:
        return problem("unsupported_pair", f"{base} to {target} is not a conversion")
    return base, target


async def get_rate(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    pair = _pair(request)
    if isinstance(pair, web.Response):
        return pair
    rate = await deps.lookup.latest(*pair)
    if rate is None:
        return problem("no_rate", f"no rate for {pair[0]}->{pair[1]}")
    return _json(rate_json(rate, utc_now()))


async def get_rates_table(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    base = code_as_typed(request.query.get("base", deps.settings.provider_base))
    if not is_currency_code(base):
        return problem("unknown_currency", f"{base[:16]!r} is not an ISO 4217 currency CES converts")
    symbols_param = request.query.get("symbols")
    if symbols_param:
        symbols = [code_as_typed(s.strip()) for s in symbols_param.split(",") if s.strip()]
        unknown = [s for s in symbols if not is_currency_code(s)]
        if unknown or len(symbols) > 200:
            return problem("unknown_currency", f"unknown currencies: {', '.join(unknown)[:200]}")
    else:
        symbols = await _available(deps)
    pairs = [(base, s) for s in symbols if s != base]
    rates = await deps.lookup.latest_many(pairs)
    now = utc_now()
    table = RatesTable.model_construct(
        base_currency=base,
        rates={t: rate_out(r, now) for (_, t), r in rates.items() if r is not None},
        missing=sorted(t for (_, t), r in rates.items() if r is None),
    )
    return _json(table.json_body())


async def _available(deps: Deps) -> list[str]:
    rows = await asyncio.to_thread(deps.rates.latest_per_pair, deps.settings.provider_base)
    return sorted(
        {deps.settings.provider_base} | {r.target_currency for r in rows if is_currency_code(r.target_currency)}
    )


def _day(value: str | None, name: str) -> date | web.Response:
    if value is None:
        return problem("invalid_request", f"query parameter {name}=YYYY-MM-DD is required")
    try:
        return date.fromisoformat(value)
    except ValueError:
        return problem("invalid_request", f"{name} must be a date YYYY-MM-DD")


async def get_rate_history(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    pair = _pair(request)
    if isinstance(pair, web.Response):
        return pair
    start, end = _day(request.query.get("start"), "start"), _day(request.query.get("end"), "end")
    if isinstance(start, web.Response):
        return start
    if isinstance(end, web.Response):
        return end
    if end < start:
        return problem("invalid_request", "end is before start")
    try:
        limit = min(MAX_HISTORY_PAGE, max(1, int(request.query.get("limit", "500"))))
        after = datetime.fromisoformat(request.query["after"]) if "after" in request.query else None
    except ValueError:
        return problem("invalid_request", "limit must be an integer and after an RFC 3339 timestamp")
    if after is not None and after.tzinfo is None:
        return problem("invalid_request", "after must carry a UTC offset")
    try:
        window = (datetime.combine(start, time(), UTC), datetime.combine(end + timedelta(days=1), time(), UTC))
    except OverflowError:
        return problem("invalid_request", "end is past the last representable day")
    page = await asyncio.to_thread(
        deps.rates.pair_history,
        *pair,
        deps.settings.provider_base,
        start=window[0],
        end=window[1],
        after=after,
        limit=limit,
    )
    items = [
        HistoryItem.model_construct(
            rate_value=r.rate_value,
            kind=r.kind.value,
            published_at=r.published_at,
            rate_ids=list(r.rate_ids),
            legs=[leg_out(leg) for leg in r.legs],
        )
        for r in page
    ]
    next_url = None
    if len(page) == limit:
        query = {**request.query, "after": rfc3339(page[-1].published_at), "limit": str(limit)}
        next_url = str(request.rel_url.with_query(query))
    history = RateHistory.model_construct(base_currency=pair[0], target_currency=pair[1], items=items, next=next_url)
    return _json(history.json_body())


async def get_currencies(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    available = await _available(deps)
    known = currencies()
    listed = [
        CurrencyOut.model_construct(code=c, name=known[c].name, minor_units=known[c].minor_units)
        for c in available
        if c in known
    ]
    return _json(Currencies.model_construct(currencies=listed).json_body())


async def healthz(request: web.Request) -> web.Response:
    return _json(Status.model_construct(status="ok").json_body())


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    checks = await deps.readiness()
    if all(ok for ok, _ in checks.values()):
        ready = Status.model_construct(status="ready", checks={k: detail for k, (_, detail) in checks.items()})
        return _json(ready.json_body())
    failing = {k: detail for k, (ok, detail) in checks.items() if not ok}
    return problem("not_ready", f"unavailable: {', '.join(failing)}", checks=failing)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=docs_html(), content_type="text/html")


ROUTES = [
    *BATCH_ROUTES,  # before /v1/conversions/{audit_id}
    web.post("/v1/conversions", post_conversion),
    # Not "batch": that path is the batch route's alone (a 405 there must say `Allow: POST`, not GET too).
    web.get("/v1/conversions/{audit_id:(?!batch$)[^/]+}", get_conversion),
    web.get("/v1/conversion-requests/{request_id}", get_conversion_request),
    web.get("/v1/rates", get_rates_table),
    web.get("/v1/rates/{base}/{target}", get_rate),
    web.get("/v1/rates/{base}/{target}/history", get_rate_history),
    web.get("/v1/currencies", get_currencies),
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
    web.get("/openapi.json", openapi),
    web.get("/docs", docs),
]
