"""`GET /v1/timeseries` and `GET /v1/fluctuation` over the real bundled history, against an independent Decimal
computation from the ECB CSV (the same stack as the browser tests: the whole history backfilled)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from ces.adapters.providers.ecb_history import load_history
from ces.domain.money import is_currency_code
from tests.browser.conftest import Dashboard


def get(dashboard: Dashboard, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(dashboard.url + path, headers={"Authorization": f"Bearer {dashboard.key}"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def expected_cross(base: str, target: str, day: date) -> Decimal | None:
    """base->target from the CSV: (EUR->target) / (EUR->base), 16 significant digits, half-even."""
    rates = load_history().rates[day]
    if base not in rates or target not in rates:
        return None
    value = Context(prec=28, rounding=ROUND_HALF_EVEN).divide(rates[target], rates[base])
    return value.quantize(Decimal(1).scaleb(value.adjusted() - 15), rounding=ROUND_HALF_EVEN)


def last_day() -> str:
    # The browser tests publish rates dated today: the history's own range ends at its last ECB day.
    return load_history().days[-1].isoformat()


def test_a_27_year_cross_series_matches_the_ecb_csv_day_by_day(dashboard: Dashboard) -> None:
    status, body = get(dashboard, f"/v1/timeseries?base=USD&symbols=GBP,RUB&start=1999-01-01&end={last_day()}")
    assert status == 200
    history = load_history()
    mismatches = []
    for day in history.days:
        for symbol in ("GBP", "RUB"):  # RUB: quoted 2005 to 2022-03-01 only
            want = expected_cross("USD", symbol, day)
            got = body["rates"].get(day.isoformat(), {}).get(symbol)
            if (want is None) != (got is None) or (got is not None and Decimal(got) != want):
                mismatches.append((day, symbol, got, want))
    assert mismatches == []
    assert len(body["rates"]) == sum(1 for d in history.days if "USD" in history.rates[d])
    assert all(len(ids) == 2 for day in body["rate_ids"].values() for ids in day.values())  # crosses: two rows


def test_all_symbols_over_27_years_stream_completely(dashboard: Dashboard) -> None:
    status, body = get(dashboard, f"/v1/timeseries?start=1999-01-01&end={last_day()}")
    assert status == 200
    history = load_history()
    served = sum(len(day) for day in body["rates"].values())
    # Every stored EUR->X row once, of the currencies CES converts (not CYP, EEK, ... withdrawn since).
    assert served == sum(1 for r in history.rates.values() for c in r if is_currency_code(c))
    assert body["rate_ids"].keys() == body["rates"].keys()


def test_fluctuation_over_a_year_matches_the_csv(dashboard: Dashboard) -> None:
    status, body = get(dashboard, "/v1/fluctuation?base=EUR&symbols=USD,RUB&start=2008-01-01&end=2008-12-31")
    assert status == 200
    usd = body["rates"]["USD"]
    history = load_history()
    days = history.days_between(date(2008, 1, 1), date(2008, 12, 31))
    first, last = history.rates[days[0]]["USD"], history.rates[days[-1]]["USD"]
    assert (usd["start_date"], usd["end_date"]) == (days[0].isoformat(), days[-1].isoformat())
    assert (Decimal(usd["start_rate"]), Decimal(usd["end_rate"])) == (first, last)
    assert Decimal(usd["change"]) == last - first
    pct = ((last - first) / first * 100).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    assert Decimal(usd["change_pct"]) == pct
    assert "RUB" in body["rates"] and body["missing"] == []
    # A currency the ECB stopped quoting inside the range: its last value is its last day.
    status, body = get(dashboard, "/v1/fluctuation?base=USD&symbols=RUB&start=2022-01-01&end=2022-12-31")
    assert status == 200 and body["rates"]["RUB"]["end_date"] == "2022-03-01"
    assert len(body["rates"]["RUB"]["end_rate_ids"]) == 2  # a cross: EUR->USD and EUR->RUB of that day


def test_bad_ranges_are_problems(dashboard: Dashboard) -> None:
    status, body = get(dashboard, "/v1/timeseries?symbols=USD&start=2020-01-02&end=2020-01-01")
    assert (status, body["type"]) == (422, "/problems/invalid_range")
    status, body = get(dashboard, "/v1/fluctuation?symbols=QQQ&start=2020-01-01&end=2020-01-02")
    assert (status, body["type"]) == (422, "/problems/unknown_currency")
