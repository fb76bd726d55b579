"""Benchmark and screenshots of the dashboard in headless Chromium over the whole bundled history.

Loads the history into a private worker + gateway (`history_stack`), publishes today's rates (the last ECB day's
values, published now) so the table is fresh and a conversion succeeds, then with Debian's chromium: time to
first paint and first contentful paint (Performance API `paint` entries), time to draw EUR->USD over
1999-2026 (the page's `chart` measure: request, parse, draw), a conversion, and screenshots into docs/.
With `--timeseries` it also runs `benchmarks/timeseries.py`'s measurements on the same stack.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from benchmarks.history_stack import HistoryStack, history_stack
from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.providers.ecb_history import load_history
from ces.events.rates import RateFetched
from ces.events.topics import RATES_FETCHED
from ces.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


async def publish_today(prefix: str) -> None:
    from aiokafka import AIOKafkaProducer

    history = load_history()
    now = datetime.now(UTC)
    producer = AIOKafkaProducer(**kafka_kwargs(Settings()))
    await producer.start()
    try:
        for target, value in history.rates[history.days[-1]].items():
            event = RateFetched.for_quote(
                provider_name="ecb",
                base_currency="EUR",
                target_currency=target,
                rate_value=value,
                published_at=now,
                fetched_at=now,
                fetch_id=uuid4(),
            )
            await producer.send(prefix + RATES_FETCHED.name, event.to_json(), key=event.key())
        await producer.flush()
    finally:
        await producer.stop()


def run_browser(stack: HistoryStack, runs: int) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    paints: list[float] = []
    contentful: list[float] = []
    charts: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        for attempt in range(runs):
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            context.add_init_script(f"sessionStorage.setItem('ces-api-key', {stack.key!r})")
            page = context.new_page()
            page.goto(f"{stack.url}/dashboard")
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            entries = page.evaluate(
                "Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))"
            )
            paints.append(entries["first-paint"])
            contentful.append(entries["first-contentful-paint"])
            page.select_option("#chart-base", "EUR")
            page.select_option("#chart-target", "USD")
            page.fill("#chart-start", "1999-01-01")
            page.fill("#chart-end", "2026-12-31")
            page.click("#chart-form button")
            page.wait_for_selector("#chart[data-points]", timeout=120_000)
            charts.append(page.evaluate("performance.getEntriesByName('chart', 'measure')[0].duration"))
            points = page.get_attribute("#chart", "data-points")
            if attempt == runs - 1:
                page.select_option("#convert-base", "USD")
                page.select_option("#convert-target", "JPY")
                page.click("#convert-form button")
                page.wait_for_selector(".audit, #convert-result .problem", timeout=60_000)
                # A new publication while the page is open, for the live feed (another thread: Playwright's
                # sync API runs an event loop on this one).
                with ThreadPoolExecutor(1) as thread:
                    thread.submit(asyncio.run, publish_today(stack.topic_prefix)).result(timeout=60)
                page.wait_for_selector("#live-feed li", timeout=60_000)
                page.wait_for_timeout(1500)  # the recent-conversions table and the ages settle
                page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
                page.evaluate(
                    "(() => { const u = window.__cesChart; if (u) u.setScale('x', "
                    "{min: Date.UTC(2007, 6, 1) / 1000, max: Date.UTC(2009, 6, 1) / 1000}); })()"
                )
                page.locator("#history").screenshot(path=str(DOCS / "dashboard-chart-zoomed.png"))
            context.close()
        browser.close()
    print(f"chart points: {points}")
    print(f"runs: {runs} (fresh browser context each)")
    print(
        f"first paint:            median {statistics.median(paints):.0f} ms "
        f"(min {min(paints):.0f}, max {max(paints):.0f})"
    )
    print(
        f"first contentful paint: median {statistics.median(contentful):.0f} ms "
        f"(min {min(contentful):.0f}, max {max(contentful):.0f})"
    )
    print(
        f"27-year chart (request + parse + draw): median {statistics.median(charts):.0f} ms "
        f"(min {min(charts):.0f}, max {max(charts):.0f})"
    )
    print(f"screenshots: {DOCS / 'dashboard.png'}, {DOCS / 'dashboard-chart-zoomed.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeseries", action="store_true", help="also measure GET /v1/timeseries")
    args = parser.parse_args()
    with history_stack() as stack:
        asyncio.run(publish_today(stack.topic_prefix))
        if args.timeseries:
            from benchmarks.timeseries import measure

            measure(stack)
        run_browser(stack, args.runs)


if __name__ == "__main__":
    main()
