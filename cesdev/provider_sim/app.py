"""The FX provider simulator: ECB XML and Fixer JSON served offline from real ECB history, with fault injection.

Provider routes mirror the real services: the ECB feeds at `/stats/eurofxref/...`, Fixer at
`/latest` and `/timeseries`. The simulator has its own "today" (a historical date); answers use
the most recent ECB publication day on or before it. Control routes under `/_sim/` move today,
arm failures and report what was served; they are never counted or failed.

Fixer behaviour kept from the real service: errors come back as HTTP 200 with
`{"success": false, "error": {...}}` (101 missing/invalid key, 201 base, 202 symbols,
501-505 time frame); any base currency the ECB quoted that day is accepted and rebased
(see `data.rebase`); rate lists include the base itself at 1; `/timeseries` lists only ECB
publication days, at most 365 days per request, ending no later than today.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from aiohttp import web

from ces.adapters.providers.ecb import DAILY_PATH, HIST_90D_PATH, HIST_PATH, publication_instant
from ces.adapters.providers.ecb_history import (
    EcbHistory,
    feed_document,
    load_history,
    rebase,
    render_day,
    rendered_history,
)

DEFAULT_TIMEOUT_DELAY = 30.0
HIST_90D_DAYS = 90
MAX_TIMESERIES_DAYS = 365


class FailureMode(StrEnum):
    HTTP500 = "http500"
    # Hold the request for `timeout_delay` seconds before answering normally.
    TIMEOUT = "timeout"
    # Answer 200 with the real body cut in half, like a connection dropped mid-transfer.
    MALFORMED = "malformed"
    NONE = "none"


@dataclass
class SimState:
    history: EcbHistory
    today: date
    access_key: str
    timeout_delay: float
    failure_mode: FailureMode = FailureMode.NONE
    failures_left: int = 0
    provider_requests: int = 0
    requests_by_path: Counter[str] = field(default_factory=Counter)
    # Set on shutdown so requests held by the timeout mode let the server stop promptly.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    # Live mode (demos): the latest feeds show the newest historical rates dated as the latest real
    # weekday, so a service that rejects stale rates accepts them. Setting a date turns it off.
    live: bool = False

    def shown_day(self, day: date) -> date:
        """The date the daily feeds print for the rates of `day`."""
        if not self.live:
            return day
        now = datetime.now(UTC)
        shown = now.date()
        # The newest weekday whose 16:00 CET publication has already happened.
        while shown.weekday() >= 5 or publication_instant(shown) > now:
            shown -= timedelta(days=1)
        return shown

    def business_day(self) -> date:
        day = self.history.latest_on_or_before(self.today)
        # `set_today` keeps today on or after the first day of the history.
        assert day is not None
        return day

    def set_today(self, today: date) -> None:
        if today < self.history.days[0]:
            raise ValueError(f"the history starts on {self.history.days[0]}; {today} is before it")
        self.today = today
        self.live = False

    def take_failure(self) -> FailureMode:
        if self.failures_left <= 0:
            return FailureMode.NONE
        self.failures_left -= 1
        return self.failure_mode

    def as_json(self) -> dict[str, object]:
        return {
            "today": self.today.isoformat(),
            "business_day": self.business_day().isoformat(),
            "live": self.live,
            "history": {"first": self.history.days[0].isoformat(), "last": self.history.days[-1].isoformat()},
            "failure": {
                "mode": self.failure_mode.value if self.failures_left else FailureMode.NONE.value,
                "remaining": self.failures_left,
                "timeout_delay_seconds": self.timeout_delay,
            },
            "provider_requests": self.provider_requests,
            "requests_by_path": dict(self.requests_by_path),
        }


SIM_STATE = web.AppKey("sim_state", SimState)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_sim_app(
    today: date | None = None,
    *,
    access_key: str = "sim-key",
    timeout_delay: float = DEFAULT_TIMEOUT_DELAY,
    live: bool = False,
) -> web.Application:
    """The simulator app; `today` defaults to the last day of the bundled history.

    The first call in a process loads the bundled history (a fraction of a second); later calls reuse it.
    """
    history = load_history()
    state = SimState(history, history.days[-1], access_key, timeout_delay, live=live and today is None)
    if today is not None:
        state.set_today(today)
    app = web.Application(middlewares=[_provider_faults])
    app[SIM_STATE] = state
    app.on_shutdown.append(_release_held_requests)
    app.add_routes(
        [
            web.get(DAILY_PATH, ecb_daily),
            web.get(HIST_90D_PATH, ecb_hist_90d),
            web.get(HIST_PATH, ecb_hist),
            web.get("/latest", fixer_latest),
            web.get("/timeseries", fixer_timeseries),
            web.get("/_sim/state", sim_state),
            web.post("/_sim/today", sim_today),
            web.post("/_sim/advance", sim_advance),
            web.post("/_sim/fail", sim_fail),
        ]
    )
    return app


def run_sim(host: str, port: int, today: date | None, *, live: bool = False) -> None:
    """Serve the simulator until interrupted."""
    # Cancelling a handler when its client gives up frees requests held by the timeout mode.
    web.run_app(create_sim_app(today, live=live), host=host, port=port, handler_cancellation=True)


async def _release_held_requests(app: web.Application) -> None:
    app[SIM_STATE].closing.set()


@web.middleware
async def _provider_faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if request.path.startswith("/_sim/"):
        return await handler(request)
    state = request.app[SIM_STATE]
    state.provider_requests += 1
    state.requests_by_path[request.path] += 1
    mode = state.take_failure()
    if mode is FailureMode.HTTP500:
        return web.Response(status=500, text="simulated provider failure")
    if mode is FailureMode.TIMEOUT:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.closing.wait(), state.timeout_delay)
        if state.closing.is_set():
            return web.Response(status=503, text="simulator shutting down")
    response = await handler(request)
    if mode is FailureMode.MALFORMED and isinstance(response, web.Response) and isinstance(response.body, bytes):
        body = response.body
        return web.Response(body=body[: len(body) // 2], status=response.status, content_type=response.content_type)
    return response


# ECB


async def ecb_daily(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    day = state.business_day()
    return _xml(feed_document([render_day(state.shown_day(day), state.history.rates[day])]))


async def ecb_hist_90d(request: web.Request) -> web.Response:
    today = request.app[SIM_STATE].today
    return await _ecb_hist_between(today - timedelta(days=HIST_90D_DAYS - 1), today)


async def ecb_hist(request: web.Request) -> web.Response:
    return await _ecb_hist_between(date.min, request.app[SIM_STATE].today)


async def _ecb_hist_between(oldest: date, newest: date) -> web.Response:
    # Rendering the whole history once costs a fraction of a second: do it off the event loop.
    rendered = await asyncio.to_thread(rendered_history)
    return _xml(feed_document([rendered.between(oldest, newest)]))


def _xml(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/xml", charset="utf-8")


# Fixer


class _FixerRefusal(Exception):
    def __init__(self, code: int, kind: str, info: str) -> None:
        super().__init__(info)
        self.payload = {"success": False, "error": {"code": code, "type": kind, "info": info}}


async def fixer_latest(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    try:
        base, symbols = _fixer_params(request, state)
        day = state.business_day()
        rates = _fixer_rates(state.history.rates[day], base, symbols)
        if rates is None:
            raise _FixerRefusal(201, "invalid_base_currency", f"The ECB did not quote {base} on {day}.")
        shown = state.shown_day(day)
        payload: Mapping[str, object] = {
            "success": True,
            "timestamp": int(publication_instant(shown).timestamp()),
            "base": base,
            "date": shown.isoformat(),
            "rates": rates,
        }
    except _FixerRefusal as refusal:
        payload = refusal.payload
    return _json(payload)


async def fixer_timeseries(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    try:
        base, symbols = _fixer_params(request, state)
        start, end = _fixer_time_frame(request)
        by_day: dict[str, object] = {}
        for day in state.history.days_between(start, min(end, state.today)):
            rates = _fixer_rates(state.history.rates[day], base, symbols)
            if rates is not None:
                by_day[day.isoformat()] = rates
        payload: Mapping[str, object] = {
            "success": True,
            "timeseries": True,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "base": base,
            "rates": by_day,
        }
    except _FixerRefusal as refusal:
        payload = refusal.payload
    return _json(payload)


def _fixer_params(request: web.Request, state: SimState) -> tuple[str, tuple[str, ...]]:
    key = request.query.get("access_key")
    if not key:
        raise _FixerRefusal(101, "missing_access_key", "You have not supplied an API Access Key.")
    if key != state.access_key:
        raise _FixerRefusal(101, "invalid_access_key", "You have not supplied a valid API Access Key.")
    known = state.history.currencies | {"EUR"}
    base = request.query.get("base", "EUR").strip().upper()
    if base not in known:
        raise _FixerRefusal(201, "invalid_base_currency", f"Unknown base currency {base!r}.")
    symbols = tuple(s.strip().upper() for s in request.query.get("symbols", "").split(",") if s.strip())
    unknown = [symbol for symbol in symbols if symbol not in known]
    if unknown:
        raise _FixerRefusal(202, "invalid_currency_codes", f"Unknown currency codes: {', '.join(unknown)}.")
    return base, symbols


def _fixer_time_frame(request: web.Request) -> tuple[date, date]:
    if "start_date" not in request.query or "end_date" not in request.query:
        raise _FixerRefusal(501, "no_timeframe_supplied", "Specify start_date and end_date (YYYY-MM-DD).")
    start = _query_date(request, "start_date", 502, "invalid_start_date")
    end = _query_date(request, "end_date", 503, "invalid_end_date")
    if start > end:
        raise _FixerRefusal(504, "invalid_time_frame", "start_date is after end_date.")
    if (end - start).days >= MAX_TIMESERIES_DAYS:
        raise _FixerRefusal(505, "time_frame_too_long", f"The time frame is longer than {MAX_TIMESERIES_DAYS} days.")
    return start, end


def _query_date(request: web.Request, name: str, code: int, kind: str) -> date:
    try:
        return date.fromisoformat(request.query[name])
    except ValueError:
        raise _FixerRefusal(code, kind, f"{name} must be YYYY-MM-DD.") from None


def _fixer_rates(ecb_rates: Mapping[str, Decimal], base: str, symbols: tuple[str, ...]) -> dict[str, Decimal] | None:
    rates = rebase(ecb_rates, base)
    if rates is None or not symbols:
        return rates
    return {symbol: rates[symbol] for symbol in symbols if symbol in rates}


def _json(payload: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(text=_encode(payload), status=status, content_type="application/json")


def _encode(value: object) -> str:
    """JSON with `Decimal`s written as numbers with their exact digits (`json` would need floats)."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(key))}:{_encode(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return json.dumps(value)


# Control


async def sim_state(request: web.Request) -> web.Response:
    return _json(request.app[SIM_STATE].as_json())


async def sim_today(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    try:
        state.set_today(date.fromisoformat(request.query.get("date", "")))
    except ValueError as exc:
        return _json({"error": f"date must be YYYY-MM-DD within the history: {exc}"}, status=400)
    return _json(state.as_json())


async def sim_advance(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    try:
        state.set_today(state.today + timedelta(days=int(request.query.get("days", "1"))))
    except (ValueError, OverflowError) as exc:
        return _json({"error": f"days must be an integer keeping today within the history: {exc}"}, status=400)
    return _json(state.as_json())


async def sim_fail(request: web.Request) -> web.Response:
    state = request.app[SIM_STATE]
    try:
        body = await request.json()
        mode = FailureMode(body["mode"])
        count = body.get("count", 1)
        delay = body.get("delay_seconds", state.timeout_delay)
        if not isinstance(count, int) or count < 0 or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("count must be an integer >= 0 and delay_seconds a number >= 0")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return _json(
            {"error": f'expected {{"mode": "http500"|"timeout"|"malformed"|"none", "count": N}}: {exc!r}'},
            status=400,
        )
    state.failure_mode = mode
    state.failures_left = 0 if mode is FailureMode.NONE else count
    state.timeout_delay = float(delay)
    return _json(state.as_json())
