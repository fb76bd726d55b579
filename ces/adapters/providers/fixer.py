"""The Fixer-compatible JSON API client (fixer.io and look-alikes): `/latest` and `/timeseries`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import aiohttp
from pydantic import SecretStr

from ces.adapters.providers.base import body_excerpt, http_get, parse_rate, raise_for_status
from ces.domain.rates import DEFAULT_MAX_CLOCK_SKEW
from ces.services.rate_providers import (
    PermanentProviderError,
    ProviderError,
    ProviderQuote,
    TransientProviderError,
    check_not_future,
)

# Fixer refuses longer /timeseries windows (error 505), so history is fetched in slices this long.
MAX_TIMESERIES_DAYS = 365

_EPOCH = Decimal(0)
_LAST_TIMESTAMP = Decimal(int(datetime(9999, 12, 31, tzinfo=UTC).timestamp()))


class FixerClient:
    """Reads one base currency's rates from a Fixer-compatible API under `base_url`.

    `published_at` of a latest quote is Fixer's `timestamp`; `/timeseries` carries dates only, so
    history quotes are stamped with their date at 00:00 UTC. `timeout` bounds each request, body
    included. The access key travels in the query string: no error this client raises quotes it (every
    message passes `_masked`, whatever raised it), and its repr shows `**********`.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        access_key: SecretStr | str,
        *,
        base_currency: str = "EUR",
        symbols: Sequence[str] | None = None,
        timeout: float = 10.0,
        name: str = "fixer",
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
    ) -> None:
        self.name = name
        self._max_clock_skew = max_clock_skew
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._access_key = access_key if isinstance(access_key, SecretStr) else SecretStr(access_key)
        self._base_currency = base_currency
        self._symbols = tuple(symbols) if symbols else ()
        self._timeout = timeout

    async def fetch_latest(self) -> ProviderQuote:
        with self._masking():
            body = await self._get("/latest", {})
            quote = parse_latest(body, self.name, self._base_currency)
        return check_not_future(quote, datetime.now(UTC), self._max_clock_skew)

    async def fetch_history(self, start: date, end: date) -> AsyncIterator[ProviderQuote]:
        """One quote per day Fixer has rates for in `[start, end]`, oldest first, via `/timeseries`."""
        if start > end:
            raise ValueError(f"history range is empty: start {start} is after end {end}")
        window_start = start
        while window_start <= end:
            window_end = min(end, window_start + timedelta(days=MAX_TIMESERIES_DAYS - 1))
            with self._masking():
                body = await self._get(
                    "/timeseries",
                    {"start_date": window_start.isoformat(), "end_date": window_end.isoformat()},
                )
                quotes = parse_timeseries(body, self.name, self._base_currency)
            for day, quote in quotes:
                if window_start <= day <= window_end:
                    yield check_not_future(quote, datetime.now(UTC), self._max_clock_skew)
            window_start = window_end + timedelta(days=1)

    @contextlib.contextmanager
    def _masking(self) -> Iterator[None]:
        """No error leaves with the access key in it: not a transport error quoting the URL, not a provider
        echoing the key in the body we quote, not anything raised outside `http_get`'s own net."""
        key = self._access_key.get_secret_value()
        try:
            yield
        except ProviderError as exc:
            if not key or key not in str(exc):
                raise
            raise type(exc)(str(exc).replace(key, "***"), status=exc.status) from None
        except Exception as exc:
            if not key or key not in f"{exc!r} {exc}":
                raise
            raise TransientProviderError(f"{self.name}: {type(exc).__name__}: {exc}".replace(key, "***")) from None

    async def _get(self, path: str, params: Mapping[str, str]) -> bytes:
        url = self._base_url + path
        query = {"access_key": self._access_key.get_secret_value(), "base": self._base_currency, **params}
        if self._symbols:
            query["symbols"] = ",".join(self._symbols)
        status, body = await http_get(self._session, url, provider=self.name, timeout=self._timeout, params=query)
        error = _error_text(body)
        raise_for_status(self.name, url, status, error or body_excerpt(body))
        if error is not None:
            # Fixer answers HTTP 200 even for a bad key: the refusal is only in the body.
            raise PermanentProviderError(f"{self.name}: GET {url} answered HTTP {status} with {error}", status=status)
        return body


def parse_latest(body: bytes, provider: str, base_currency: str) -> ProviderQuote:
    """The quote in a `/latest` (or historical-day) answer."""
    payload = _decode(body, provider, base_currency)
    day = _parse_day(provider, payload.get("date")) if "date" in payload else None
    timestamp = payload.get("timestamp")
    if timestamp is None and day is not None:
        # Some Fixer look-alikes send only the date.
        published_at = datetime(day.year, day.month, day.day, tzinfo=UTC)
    else:
        published_at = _parse_timestamp(provider, timestamp)
    return ProviderQuote(provider, base_currency, published_at, _parse_rates(provider, payload.get("rates")))


def parse_timeseries(body: bytes, provider: str, base_currency: str) -> list[tuple[date, ProviderQuote]]:
    """The quotes in a `/timeseries` answer, oldest first, each stamped with its date at 00:00 UTC."""
    payload = _decode(body, provider, base_currency)
    by_day = payload.get("rates")
    if not isinstance(by_day, dict):
        raise TransientProviderError(f"{provider}: malformed body: 'rates' is not an object")
    quotes = []
    for key, rates in by_day.items():
        day = _parse_day(provider, key)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        quotes.append((day, ProviderQuote(provider, base_currency, midnight, _parse_rates(provider, rates))))
    return sorted(quotes, key=lambda pair: pair[0])


def _decode(body: bytes, provider: str, base_currency: str) -> dict[str, object]:
    """The payload of a successful answer; Fixer reports errors with HTTP 200 and `success: false`."""
    try:
        # Decimal for every number so the provider's digits survive: 1.0712 must not become a float.
        payload = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, RecursionError) as exc:
        raise TransientProviderError(f"{provider}: malformed body: {exc} (body starts {body_excerpt(body)!r})") from exc
    if not isinstance(payload, dict):
        raise TransientProviderError(f"{provider}: malformed body: not a JSON object: {body_excerpt(body)!r}")
    success = payload.get("success")
    if success is False:
        raise PermanentProviderError(f"{provider}: request refused: {_error_text(body) or body_excerpt(body)}")
    if success is not True:
        raise TransientProviderError(f"{provider}: malformed body: no 'success' flag: {body_excerpt(body)!r}")
    if payload.get("base") != base_currency:
        # A well-formed answer to another question: retrying will not change it.
        raise PermanentProviderError(
            f"{provider}: asked for base {base_currency}, answer has base {payload.get('base')!r}"
        )
    return payload


def _parse_rates(provider: str, rates: object) -> dict[str, Decimal]:
    if not isinstance(rates, dict) or not rates:
        raise TransientProviderError(f"{provider}: malformed body: 'rates' is not a non-empty object")
    return dict(parse_rate(provider, currency, value) for currency, value in rates.items())


def _parse_timestamp(provider: str, value: object) -> datetime:
    # Bounds first: int() of a JSON number like 1e999999999 would build a billion-digit integer.
    if isinstance(value, Decimal) and _EPOCH <= value <= _LAST_TIMESTAMP and value == value.to_integral_value():
        with contextlib.suppress(OverflowError, OSError):  # a platform with a narrower time_t
            return datetime.fromtimestamp(int(value), UTC)
    raise TransientProviderError(f"{provider}: malformed body: bad timestamp {value!r}")


def _parse_day(provider: str, value: object) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise TransientProviderError(f"{provider}: malformed body: bad date {value!r}")


def _error_text(body: bytes) -> str | None:
    """Fixer's own description of an error body, e.g. `error 101 (invalid_access_key): You have not...`."""
    if b'"error"' not in body:  # spares a second parse of every successful answer
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or payload.get("success") is True:
        return None
    error = payload.get("error")
    if not isinstance(error, dict):
        return None
    text = f"error {error.get('code', '?')} ({error.get('type', 'unknown')})"
    info = error.get("info")
    return f"{text}: {info}" if info else text
