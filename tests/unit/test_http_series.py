"""Time series, fluctuation, the live stream and the dashboard's routes, with fakes (real path: tests/e2e, browser)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web

from ces.domain.rates import Rate
from ces.domain.series import Fluctuation, day_values
from ces.http import series
from ces.http.dashboard import CSP
from ces.http.deps import DEPS
from ces.http.live import LIVE_HEARTBEAT
from ces.services.live_rates import RateBroadcast
from tests.fakes import FakeRateReads, stored_rate
from tests.gateway_clients import Client, Gateways


def at(day: str, hour: int = 15) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


# Two ECB days, USD and GBP; GBP is missing on the second day (a currency the ECB stopped quoting).
ROWS = [
    stored_rate("USD", "1.1000", at("2024-03-14")),
    stored_rate("GBP", "0.8500", at("2024-03-14")),
    stored_rate("USD", "1.1200", at("2024-03-15")),
]


@pytest.fixture
async def client(gateways: Gateways) -> Client:
    def fast_heartbeat(app: web.Application) -> None:
        app[LIVE_HEARTBEAT] = 0.2

    return await gateways.start(rates=FakeRateReads(ROWS), live=RateBroadcast(queue_size=2), configure=fast_heartbeat)


def test_a_cross_uses_legs_of_one_publication_and_names_them() -> None:
    day = at("2024-03-14")
    later = day + timedelta(hours=1)
    rows = [stored_rate("USD", "1.10", day), stored_rate("GBP", "0.85", day), stored_rate("USD", "1.20", later)]
    values = day_values("GBP", ["USD"], "EUR", rows)
    # The 16:00 publication has no GBP leg: the cross comes from the 15:00 one, both legs from it.
    assert values["USD"].rate_value == Decimal("1.294117647058824")
    assert values["USD"].rate_ids == (rows[1].rate_id, rows[0].rate_id)


def test_fluctuation_change_is_exact_and_percent_is_rounded_half_even() -> None:
    first = day_values("EUR", ["USD"], "EUR", [stored_rate("USD", "1.1000", at("2024-03-14"))])["USD"]
    last = day_values("EUR", ["USD"], "EUR", [stored_rate("USD", "1.1200", at("2024-03-15"))])["USD"]
    f = Fluctuation(date(2024, 3, 14), first, date(2024, 3, 15), last)
    assert f.change == Decimal("0.0200")
    assert f.change_pct == Decimal("1.8182")  # 1.818181...


async def test_timeseries_has_fixers_shape_with_row_ids(client: Client) -> None:
    response = await client.get("/v1/timeseries?base=usd&symbols=EUR,GBP&start=2024-03-01&end=2024-03-31")
    assert response.status == 200
    body = await response.json()
    assert body["base"] == "USD" and (body["start_date"], body["end_date"]) == ("2024-03-01", "2024-03-31")
    assert body["rates"] == {
        "2024-03-14": {"EUR": "0.9090909090909091", "GBP": "0.7727272727272727"},
        "2024-03-15": {"EUR": "0.8928571428571429"},
    }
    assert body["rate_ids"]["2024-03-14"]["GBP"] == [str(ROWS[0].rate_id), str(ROWS[1].rate_id)]
    maybe = await client.get("/v1/timeseries?symbols=USD&start=2024-03-15&end=2024-03-15&provenance=maybe")
    assert maybe.status == 422 and (await maybe.json())["code"] == "invalid_request"
    bare = await (
        await client.get("/v1/timeseries?symbols=USD&start=2024-03-15&end=2024-03-15&provenance=false")
    ).json()
    assert bare == {
        "base": "EUR",
        "start_date": "2024-03-15",
        "end_date": "2024-03-15",
        "rates": {"2024-03-15": {"USD": "1.1200"}},
    }


async def test_a_long_series_is_written_in_many_chunks(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(series, "CHUNK_BYTES", 10)
    monkeypatch.setattr(series, "SPOOL_BYTES", 10)  # provenance spooled to disk
    response = await client.get("/v1/timeseries?symbols=USD,GBP&start=2024-01-01&end=2024-12-31")
    chunks = [chunk async for chunk in response.content.iter_any()]
    assert response.headers.get("Transfer-Encoding") == "chunked"
    body = json.loads(b"".join(chunks))
    assert set(body["rates"]) == set(body["rate_ids"]) == {"2024-03-14", "2024-03-15"}


async def test_fluctuation_per_symbol_with_the_rows_used(client: Client) -> None:
    body = await (await client.get("/v1/fluctuation?symbols=USD,GBP,JPY&start=2024-03-01&end=2024-03-31")).json()
    usd = body["rates"]["USD"]
    assert (usd["start_rate"], usd["end_rate"], usd["change"], usd["change_pct"]) == (
        "1.1000",
        "1.1200",
        "0.0200",
        "1.8182",
    )
    assert usd["start_rate_ids"] == [str(ROWS[0].rate_id)] and usd["end_rate_ids"] == [str(ROWS[2].rate_id)]
    assert usd["legs"]["end"][0]["rate_value"] == "1.1200"
    gbp = body["rates"]["GBP"]  # only one day of GBP: start and end are that day
    assert (gbp["start_date"], gbp["end_date"], gbp["change"]) == ("2024-03-14", "2024-03-14", "0.0000")
    assert body["missing"] == ["JPY"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("symbols=USD&start=2024-03-15&end=2024-03-01", "invalid_range"),
        ("symbols=USD&start=0999-01-01&end=2024-03-01", "invalid_range"),
        ("symbols=USD&start=2024-02-30&end=2024-03-01", "invalid_request"),
        ("symbols=USD&end=2024-03-01", "invalid_request"),
        ("symbols=XXX,USD&start=2024-03-01&end=2024-03-02", "unknown_currency"),
        ("base=ABC&start=2024-03-01&end=2024-03-02", "unknown_currency"),
        ("base=u%C5%BFd&start=2024-03-01&end=2024-03-02", "unknown_currency"),  # "\u017f".upper() == "S"
        ("symbols=%C5%BFek&start=2024-03-01&end=2024-03-02", "unknown_currency"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/timeseries", "/v1/fluctuation"])
async def test_bad_ranges_and_currencies_are_problems(client: Client, path: str, query: str, code: str) -> None:
    response = await client.get(f"{path}?{query}")
    assert response.status == 422 and response.content_type == "application/problem+json"
    assert (await response.json())["type"] == f"/problems/{code}"


async def _events(response: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    buffer = b""
    while len(events) < count:
        buffer += await asyncio.wait_for(response.content.readany(), 5)
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if ": " in line)
            if "event" in fields:
                events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_live_stream_sends_rates_and_heartbeats_and_tells_a_slow_client_what_it_missed(client: Client) -> None:
    broadcast = client.app[DEPS].live
    assert broadcast is not None
    response = await client.get("/v1/rates/stream")
    assert response.status == 200 and response.content_type == "text/event-stream"
    assert (await _events(response, 1))[0][0] == "ready"
    assert (await _events(response, 1))[0][0] == "heartbeat"  # 0.2 s in this test
    rate = stored_rate("USD", "1.2345", at("2024-03-16"))
    for _ in range(5):  # queue of 2: three are dropped for this client
        broadcast.publish([rate])
    got = [event for event in await _events(response, 3) if event[0] == "rates"][:2]
    assert [data["dropped"] for _, data in got] == [3, 0] and broadcast.dropped == 3
    assert got[0][1]["rates"][0]["rate_value"] == "1.2345" and got[0][1]["rates"][0]["rate_id"] == str(rate.rate_id)
    response.close()


async def test_a_full_listener_never_blocks_the_others() -> None:
    broadcast = RateBroadcast(queue_size=1)
    slow, fast = broadcast.subscribe(), broadcast.subscribe()
    assert slow is not None and fast is not None
    rates: list[Rate] = [stored_rate("USD", str(i + 1), at("2024-03-16")) for i in range(3)]
    for rate in rates:
        broadcast.publish([rate])
        update = await fast.next(1)
        assert update is not None and update.rates == (rate,) and update.dropped == 0
    first = await slow.next(1)
    assert first is not None and first.rates == (rates[0],) and first.dropped == 2


async def test_dashboard_is_open_with_a_strict_csp_and_the_root_redirects(client: Client) -> None:
    page = await client.get("/dashboard")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Content-Security-Policy"] == CSP and "'unsafe-inline'" not in CSP
    html = await page.text()
    assert "<script>" not in html and " style=" not in html  # nothing inline: the CSP would refuse it
    for asset in ("dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
        served = await client.get(f"/dashboard/static/{asset}")
        assert served.status == 200 and len(await served.read()) > 1000 and f"/dashboard/static/{asset}" in html
    assert (await client.get("/dashboard/static/../routes.py")).status == 404
    root = await client.get("/", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "/dashboard"


async def test_recent_conversions_newest_first_and_rate_rows(client: Client) -> None:
    listed = await client.get("/v1/conversions?limit=5")
    assert listed.status == 200 and (await listed.json()) == {"conversions": []}
    assert (await client.get("/v1/conversions?limit=0")).status == 422
    row = await client.get(f"/v1/rate-rows/{ROWS[0].rate_id}")
    assert (await row.json())["rate_value"] == "1.1000"
    assert (await client.get("/v1/rate-rows/not-a-uuid")).status == 404
