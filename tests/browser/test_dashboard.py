"""The dashboard as a person uses it, in headless Chromium: it loads clean, converts, charts 27 years, goes live."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

from ces.events.rates import RateFetched
from ces.events.topics import RATES_FETCHED
from tests.browser.conftest import Dashboard, Page
from tests.e2e.conftest import poll
from tests.support import produce

TIMEOUT_MS = 60_000


def sign_in(p: Page, dashboard: Dashboard) -> None:
    p.page.goto(f"{dashboard.url}/dashboard")
    p.page.fill("#api-key", dashboard.key)
    p.page.click("#key-form button")
    p.page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT_MS)


def api(dashboard: Dashboard, path: str) -> Any:
    request = urllib.request.Request(dashboard.url + path, headers={"Authorization": f"Bearer {dashboard.key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_page_loads_with_no_console_errors_and_shows_the_latest_rates(dashboard: Dashboard, page: Page) -> None:
    sign_in(page, dashboard)
    rows = page.page.locator("#rates-table tbody tr")
    assert rows.count() > 25
    usd = page.page.locator("#rates-table tr[data-currency=USD] td.rate").inner_text()
    assert usd == api(dashboard, "/v1/rates/EUR/USD")["rate_value"]
    page.page.wait_for_selector("#live-status.on", timeout=TIMEOUT_MS)
    assert page.errors == []
    # The key lives in the tab's sessionStorage only.
    assert page.page.evaluate("sessionStorage.getItem('ces-api-key')") == dashboard.key
    assert page.page.evaluate("localStorage.length") == 0


def push_rates(dashboard: Dashboard, values: dict[str, str]) -> datetime:
    """Publish EUR->X rates as the worker's fetch would, now; return their publication instant."""
    now = datetime.now(UTC)
    events = [
        RateFetched.for_quote(
            provider_name="browser-test",
            base_currency="EUR",
            target_currency=target,
            rate_value=Decimal(value),
            published_at=now,
            fetched_at=now,
            fetch_id=uuid4(),
        )
        for target, value in values.items()
    ]
    topic = dashboard.topic_prefix + RATES_FETCHED.name
    messages = [(e.key(), e.to_json()) for e in events]
    # Playwright's sync API runs an event loop on this thread: produce from another one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, produce(dashboard.settings.kafka_bootstrap, topic, messages)).result(timeout=60)
    return now


def test_a_conversion_through_the_form_shows_its_audit_and_rate_rows(dashboard: Dashboard, page: Page) -> None:
    # The bundled history ends weeks ago (older than CES_MAX_RATE_AGE_SECONDS): today's rates, as a fetch brings them.
    published = push_rates(dashboard, {"GBP": "0.8712", "JPY": "163.41"})
    poll(
        lambda: api(dashboard, "/v1/rates/GBP/JPY")["published_at"] >= published.strftime("%Y-%m-%dT%H:%M:%S"),
        timeout=60,
        what="the pushed rates projected",
    )
    sign_in(page, dashboard)
    page.page.fill("#convert-amount", "250.00")
    page.page.select_option("#convert-base", "GBP")
    page.page.select_option("#convert-target", "JPY")
    page.page.click("#convert-form button")
    page.page.wait_for_selector(".audit, #convert-result .problem", timeout=TIMEOUT_MS)
    assert page.page.locator("#convert-result .problem").count() == 0, page.page.inner_text("#convert-result")
    audit_id = page.page.inner_text(".audit [data-field=audit_id]")
    stored = api(dashboard, f"/v1/conversions/{audit_id}")
    assert page.page.inner_text(".audit [data-field=output_amount]") == stored["output_amount"]
    assert stored["input_amount"] == "250.00" and stored["rate_kind"] == "cross"
    shown_rows = page.page.locator(".audit table.rows tbody tr td:first-child").all_inner_texts()
    assert shown_rows == stored["rate_ids"]  # the two legs, EUR->GBP and EUR->JPY
    page.page.wait_for_selector(f"#recent-table td:text-is('{audit_id[:8]}')", timeout=TIMEOUT_MS)
    assert page.errors == []


def test_the_chart_draws_a_pair_over_1999_to_2026(dashboard: Dashboard, page: Page) -> None:
    sign_in(page, dashboard)
    page.page.select_option("#chart-base", "EUR")
    page.page.select_option("#chart-target", "USD")
    page.page.fill("#chart-start", "1999-01-01")
    page.page.fill("#chart-end", "2026-12-31")
    page.page.click("#chart-form button")
    page.page.wait_for_selector("#chart[data-points]", timeout=TIMEOUT_MS)
    # Every ECB day with a USD rate (plus today's, if a test published one already).
    assert 0 <= int(page.page.get_attribute("#chart", "data-points") or 0) - dashboard.days_with_usd <= 1
    canvas = page.page.locator("#chart canvas")
    assert canvas.count() == 1 and canvas.bounding_box()["width"] > 500
    # Something was drawn: the canvas holds non-transparent pixels.
    drawn = page.page.evaluate(
        "() => { const c = document.querySelector('#chart canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"
    )
    assert drawn > 1000
    assert page.page.evaluate("performance.getEntriesByName('chart', 'measure').length") == 1
    assert page.errors == []


def test_a_rate_pushed_through_kafka_appears_without_a_reload(dashboard: Dashboard, page: Page) -> None:
    sign_in(page, dashboard)
    page.page.wait_for_selector("#live-status.on", timeout=TIMEOUT_MS)
    page.page.evaluate("window.__sameDocument = true")
    value = "1.2" + str(uuid4().int)[:6]  # recognisable
    push_rates(dashboard, {"USD": value})
    page.page.wait_for_selector(f"#live-feed li:has-text('{value}')", timeout=TIMEOUT_MS)
    cell = page.page.locator("#rates-table tr[data-currency=USD] td.rate")
    cell.filter(has_text=value).wait_for(timeout=TIMEOUT_MS)
    assert page.page.evaluate("window.__sameDocument") is True  # no reload happened
    assert page.errors == []
