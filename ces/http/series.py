"""`GET /v1/timeseries` (streamed) and `GET /v1/fluctuation`: a range of days for many symbols, Fixer's shapes.

The time series is written as chunked JSON while the rows stream from a server-side cursor, so 27 years of
every symbol never sit in memory: `rates` first, then (unless `provenance=false`) `rate_ids`, the same days
and symbols with the row ids behind each value, spooled to a temporary file while `rates` is written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from ces.domain.money import code_as_typed, is_currency_code
from ces.domain.series import Fluctuation, day_values, stored_targets
from ces.events.base import decimal_text
from ces.http.deps import DEPS, Deps
from ces.http.problems import problem
from ces.http.schemas import leg_out

log = logging.getLogger(__name__)

MAX_SYMBOLS = 200
CHUNK_BYTES = 64 * 1024
SPOOL_BYTES = 1024 * 1024  # provenance kept in memory up to this size, then on disk
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)
EDGE_WINDOW = timedelta(days=14)  # fluctuation: days read next to an edge before the rest of the range


@dataclass(frozen=True)
class SeriesQuery:
    base: str
    symbols: list[str]
    start: date
    end: date


def _day(request: web.Request, name: str) -> date | web.Response:
    value = request.query.get(name)
    if value is None:
        return problem("invalid_request", f"query parameter {name}=YYYY-MM-DD is required")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return problem("invalid_request", f"{name} must be a date YYYY-MM-DD")
    if not FIRST_DAY <= day <= LAST_DAY:
        return problem("invalid_range", f"{name} must lie between {FIRST_DAY} and {LAST_DAY}")
    return day


async def _parse(request: web.Request, deps: Deps) -> SeriesQuery | web.Response:
    base = code_as_typed(request.query.get("base", deps.settings.provider_base))
    if not is_currency_code(base):
        return problem("unknown_currency", f"{base[:16]!r} is not an ISO 4217 currency CES converts")
    start, end = _day(request, "start"), _day(request, "end")
    if isinstance(start, web.Response):
        return start
    if isinstance(end, web.Response):
        return end
    if end < start:
        return problem("invalid_range", f"start {start} is after end {end}")
    param = request.query.get("symbols")
    if param:
        symbols = list(dict.fromkeys(code_as_typed(s.strip()) for s in param.split(",") if s.strip()))
        unknown = [s for s in symbols if not is_currency_code(s)]
        if unknown:
            return problem("unknown_currency", f"unknown currencies: {', '.join(unknown)[:200]}")
        if len(symbols) > MAX_SYMBOLS:
            return problem("invalid_request", f"at most {MAX_SYMBOLS} symbols")
    else:
        rows = await asyncio.to_thread(deps.rates.latest_per_pair, deps.settings.provider_base)
        # As `GET /v1/currencies`: the codes CES converts (a withdrawn currency's stored rows are not served).
        symbols = sorted(
            {deps.settings.provider_base} | {r.target_currency for r in rows if is_currency_code(r.target_currency)}
        )
    return SeriesQuery(base, [s for s in symbols if s != base], start, end)


def _chunks(deps: Deps, q: SeriesQuery, provenance: bool) -> Generator[bytes]:
    """The whole response body, in chunks of about CHUNK_BYTES. Blocking (reads PostgreSQL)."""
    pivot = deps.settings.provider_base
    days = deps.rates.daily(pivot, stored_targets(q.base, q.symbols, pivot), q.start, q.end)
    head = {"base": q.base, "start_date": q.start.isoformat(), "end_date": q.end.isoformat()}
    buffer = [json.dumps(head)[:-1], ', "rates": {']
    size = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+") as ids:
        try:
            first = True
            for day, rows in days:
                values = day_values(q.base, q.symbols, pivot, rows)
                if not values:
                    continue
                key = json.dumps(day.isoformat())
                sep = "" if first else ", "
                first = False
                text = sep + key + ": " + json.dumps({s: decimal_text(v.rate_value) for s, v in values.items()})
                buffer.append(text)
                size += len(text)
                if provenance:
                    ids.write(
                        sep + key + ": " + json.dumps({s: [str(i) for i in v.rate_ids] for s, v in values.items()})
                    )
                if size >= CHUNK_BYTES:
                    yield "".join(buffer).encode()
                    buffer, size = [], 0
        finally:
            close = getattr(days, "close", None)
            if close is not None:
                close()
        buffer.append("}")
        if provenance:
            buffer.append(', "rate_ids": {')
            ids.seek(0)
            while part := ids.read(CHUNK_BYTES):
                buffer.append(part)
                yield "".join(buffer).encode()
                buffer = []
            buffer.append("}")
    buffer.append("}\n")
    yield "".join(buffer).encode()


async def get_timeseries(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    q = await _parse(request, deps)
    if isinstance(q, web.Response):
        return q
    provenance = {"true": True, "false": False}.get(request.query.get("provenance", "true").lower())
    if provenance is None:
        return problem("invalid_request", "provenance must be true or false")
    chunks = _chunks(deps, q, provenance)
    loop = asyncio.get_running_loop()
    step = loop.run_in_executor(None, next, chunks, None)
    try:
        # The first chunk is read before the status is sent: a database that is down is still a 503 problem.
        chunk = await step
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while chunk is not None:
                await response.write(chunk)
                step = loop.run_in_executor(None, next, chunks, None)
                chunk = await step
        except (ConnectionResetError, asyncio.CancelledError):
            raise  # the client went away
        except Exception:
            # The status line is sent: a problem body can no longer replace it. Cut the connection so the
            # client sees a truncated body, never a complete-looking one.
            log.exception("timeseries failed after its first chunk; connection closed")
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        if not step.done():
            await asyncio.wait({step})  # a generator cannot be closed while a thread runs it
        await asyncio.to_thread(chunks.close)


def _edges(deps: Deps, q: SeriesQuery) -> tuple[dict[str, tuple[date, Any]], dict[str, tuple[date, Any]]]:
    """Each symbol's first and last value in the range.

    The stored days of each leg (`RateReads.spans`) say where to look: a symbol's first value is on or after
    the latest first day of its legs, its last on or before the earliest last day; from there, days are read
    (for that symbol's legs only) until one has every leg of one publication, usually the first day read.
    """
    pivot = deps.settings.provider_base
    spans = deps.rates.spans(pivot, stored_targets(q.base, q.symbols, pivot), q.start, q.end)
    first: dict[str, tuple[date, Any]] = {}
    last: dict[str, tuple[date, Any]] = {}
    for symbol in q.symbols:
        targets = stored_targets(q.base, [symbol], pivot)
        if not targets <= spans.keys():
            continue
        earliest = max(spans[t][0] for t in targets)
        latest = min(spans[t][1] for t in targets)
        near_first = min(q.end, earliest + EDGE_WINDOW)
        near_last = max(q.start, latest - EDGE_WINDOW)
        # A window next to the edge first (a short sort in PostgreSQL), the rest of the range only if the
        # window has no day with every leg.
        for edge, windows, newest_first in (
            (first, [(earliest, near_first), (near_first, q.end)], False),
            (last, [(near_last, latest), (q.start, near_last)], True),
        ):
            for start, end in windows:
                found = _first_value(deps, q.base, symbol, pivot, targets, start, end, newest_first)
                if found is not None:
                    edge[symbol] = found
                    break
    return first, last


def _first_value(
    deps: Deps, base: str, symbol: str, pivot: str, targets: set[str], start: date, end: date, newest_first: bool
) -> tuple[date, Any] | None:
    days = deps.rates.daily(pivot, targets, start, end, newest_first=newest_first)
    try:
        for day, rows in days:
            value = day_values(base, [symbol], pivot, rows).get(symbol)
            if value is not None:
                return day, value
        return None
    finally:
        close = getattr(days, "close", None)
        if close is not None:
            close()


async def get_fluctuation(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    q = await _parse(request, deps)
    if isinstance(q, web.Response):
        return q
    first, last = await asyncio.to_thread(_edges, deps, q)
    rates: dict[str, Any] = {}
    for symbol in q.symbols:
        if symbol not in first or symbol not in last:
            continue
        f = Fluctuation(first[symbol][0], first[symbol][1], last[symbol][0], last[symbol][1])
        rates[symbol] = {
            "start_date": f.start_day.isoformat(),
            "end_date": f.end_day.isoformat(),
            "start_rate": decimal_text(f.start.rate_value),
            "end_rate": decimal_text(f.end.rate_value),
            "change": decimal_text(f.change),
            "change_pct": decimal_text(f.change_pct),
            "start_rate_ids": [str(i) for i in f.start.rate_ids],
            "end_rate_ids": [str(i) for i in f.end.rate_ids],
            "legs": {
                "start": [leg_out(leg).json_body() for leg in f.start.legs],
                "end": [leg_out(leg).json_body() for leg in f.end.legs],
            },
        }
    body = {
        "base": q.base,
        "start_date": q.start.isoformat(),
        "end_date": q.end.isoformat(),
        "rates": rates,
        "missing": [s for s in q.symbols if s not in rates],
    }
    return web.json_response(body)


SERIES_ROUTES = [
    web.get("/v1/timeseries", get_timeseries),
    web.get("/v1/fluctuation", get_fluctuation),
]
