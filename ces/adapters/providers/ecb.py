"""The ECB euro foreign exchange reference rates client: the daily, 90-day and full-history XML feeds."""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from ces.adapters.providers.base import body_excerpt, http_get, parse_rate, raise_for_status
from ces.domain.rates import DEFAULT_MAX_CLOCK_SKEW
from ces.services.rate_providers import ProviderQuote, TransientProviderError, check_not_future

if TYPE_CHECKING:
    import aiohttp

# Paths as the ECB serves them under https://www.ecb.europa.eu; the simulator mirrors them.
DAILY_PATH = "/stats/eurofxref/eurofxref-daily.xml"
HIST_90D_PATH = "/stats/eurofxref/eurofxref-hist-90d.xml"
HIST_PATH = "/stats/eurofxref/eurofxref-hist.xml"

# The ECB's reference rates are always quoted against the euro.
BASE_CURRENCY = "EUR"


def publication_instant(day: date) -> datetime:
    """When the ECB publishes a day's reference rates: 16:00 Frankfurt time that day, in UTC.

    The feeds carry only the date. Computing Frankfurt's offset here (CET, or CEST from the last
    Sunday of March to the last Sunday of October, the EU rule since 1996) keeps the result
    independent of whether the host has tz data installed. The switch happens at 01:00 UTC, long
    before 16:00, so on both switch Sundays the new offset already applies.
    """
    summer = _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)
    return datetime(day.year, day.month, day.day, 14 if summer else 15, tzinfo=UTC)


def _last_sunday(year: int, month: int) -> date:
    last_day = date(year, month + 1, 1) - timedelta(days=1)
    return last_day - timedelta(days=(last_day.weekday() - 6) % 7)


def parse_feed(body: bytes, provider: str = "ecb") -> list[tuple[date, ProviderQuote]]:
    """Every day in an ECB eurofxref XML document (daily, 90-day or full history), oldest first.

    Elements are matched by local name so the parser does not depend on the namespace URIs.
    Any XML, date or rate problem raises `TransientProviderError`: a truncated or garbled body is
    the usual cause, and the next fetch normally succeeds.
    """
    days: dict[date, ProviderQuote] = {}
    try:
        # iterparse lets us drop each day's elements once read; the full history is ~7000 days.
        for _event, element in ET.iterparse(io.BytesIO(body), events=("end",)):
            if _local_name(element.tag) != "Cube" or "time" not in element.attrib:
                continue
            day = _parse_day(provider, element.attrib["time"])
            rates = dict(
                parse_rate(provider, child.get("currency"), child.get("rate"))
                for child in element
                if _local_name(child.tag) == "Cube"
            )
            if not rates:
                raise TransientProviderError(f"{provider}: malformed feed: no rates for {day}")
            days[day] = ProviderQuote(provider, BASE_CURRENCY, publication_instant(day), rates)
            element.clear()
    # LookupError/ValueError: expat's answer to an unknown or unsupported declared encoding.
    except (ET.ParseError, LookupError, ValueError) as exc:
        raise TransientProviderError(f"{provider}: malformed feed: {exc} (body starts {body_excerpt(body)!r})") from exc
    if not days:
        raise TransientProviderError(f"{provider}: malformed feed: no dated Cube (body starts {body_excerpt(body)!r})")
    return sorted(days.items())


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse_day(provider: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise TransientProviderError(f"{provider}: malformed feed: bad Cube time {text!r}") from None


class EcbClient:
    """Reads the ECB eurofxref feeds under `base_url` (the real one is https://www.ecb.europa.eu).

    `published_at` of every quote is `publication_instant(day)`. `timeout` bounds one daily fetch,
    body included; `history_timeout` bounds one history download, which is megabytes.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout: float = 10.0,
        history_timeout: float = 60.0,
        name: str = "ecb",
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        self.name = name
        self._max_clock_skew = max_clock_skew
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._history_timeout = history_timeout

    async def fetch_latest(self) -> ProviderQuote:
        days = await self._fetch_feed(DAILY_PATH, self._timeout)
        return check_not_future(days[-1][1], datetime.now(UTC), self._max_clock_skew)

    async def fetch_history(self, start: date, end: date) -> AsyncIterator[ProviderQuote]:
        """One quote per ECB publication day in `[start, end]`, oldest first.

        Tries the small 90-day feed first and falls back to the full history (some megabytes)
        only when the 90-day feed does not reach back to `start`.
        """
        if start > end:
            raise ValueError(f"history range is empty: start {start} is after end {end}")
        days = await self._fetch_feed(HIST_90D_PATH, self._history_timeout)
        if days[0][0] > start:
            days = await self._fetch_feed(HIST_PATH, self._history_timeout)
        for day, quote in days:
            if start <= day <= end:
                yield check_not_future(quote, datetime.now(UTC), self._max_clock_skew)

    async def _fetch_feed(self, path: str, timeout: float) -> list[tuple[date, ProviderQuote]]:
        url = self._base_url + path
        status, body = await http_get(self._session, url, provider=self.name, timeout=timeout)
        raise_for_status(self.name, url, status, body_excerpt(body))
        if len(body) < 64 * 1024:
            return parse_feed(body, self.name)
        # Parsing the full history takes a noticeable fraction of a second: keep it off the event loop.
        return await asyncio.to_thread(parse_feed, body, self.name)
