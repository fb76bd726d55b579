"""The contract every FX provider client meets: the quote it returns, the errors it raises, and its HTTP GET."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Protocol

import aiohttp

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class ProviderQuote:
    """One provider answer: how many units of each target currency one unit of `base_currency` buys.

    `rates` holds the provider's exact digits (`Decimal("0.83578")`, never a float round trip).
    `published_at` is the provider's own publication time, normalised to UTC; each client documents
    how it derives it when the provider only gives a date.
    """

    provider_name: str
    base_currency: str
    published_at: datetime
    rates: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        if self.published_at.tzinfo is None or self.published_at.utcoffset() is None:
            raise ValueError(f"published_at must be timezone-aware, got {self.published_at!r}")
        # Frozen means frozen: callers must not be able to edit a quote's rates after the fact.
        object.__setattr__(self, "published_at", self.published_at.astimezone(UTC))
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))


class ProviderError(Exception):
    """A provider could not give a usable answer. `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """Worth retrying: timeout, connection failure, HTTP 5xx/408/429, or a body we could not parse."""


class PermanentProviderError(ProviderError):
    """Retrying will not help until someone changes configuration: HTTP 4xx, bad access key, bad symbols."""


def check_not_future(quote: ProviderQuote, now: datetime, max_skew: timedelta) -> ProviderQuote:
    """Refuse a quote dated later than `now + max_skew`: a provider error that retrying will not fix.

    Published, it would become "the newest" rate of every pair for as long as its date lies ahead (a
    Fixer timestamp may be any instant up to year 9999), and the projection would dead-letter it anyway.
    """
    if quote.published_at > now + max_skew:
        raise PermanentProviderError(
            f"{quote.provider_name}: quote dated {quote.published_at.isoformat()}, more than "
            f"{int(max_skew.total_seconds())}s after now ({now.isoformat()}): implausible publication time"
        )
    return quote


class RateProvider(Protocol):
    """What the rate-ingestion side needs from a provider."""

    name: str

    async def fetch_latest(self) -> ProviderQuote: ...

    def fetch_history(self, start: date, end: date) -> AsyncIterator[ProviderQuote]:
        """Quotes for each publication day in `[start, end]`, oldest first (used for backfill)."""
        ...


async def http_get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    timeout: float,
    params: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """GET `url` and read the whole body within `timeout` seconds; transport failures become transient.

    Statuses are left to the caller, which knows how its provider reports errors. Messages name the
    URL without `params`, because params may carry an access key.
    """
    try:
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await response.read()
    except TimeoutError as exc:
        raise TransientProviderError(f"{provider}: GET {url} timed out after {timeout:g} s") from exc
    except aiohttp.ClientError as exc:
        raise TransientProviderError(f"{provider}: GET {url} failed: {exc!r}") from exc


def raise_for_status(provider: str, url: str, status: int, detail: str) -> None:
    """Classify a non-2xx status; `detail` is the provider's own error text for the message."""
    if 200 <= status < 300:
        return
    message = f"{provider}: GET {url} answered HTTP {status}: {detail}"
    # 408 and 429 are the provider asking us to come back later, not telling us we are wrong.
    if status >= 500 or status in (408, 429):
        raise TransientProviderError(message, status=status)
    raise PermanentProviderError(message, status=status)


def body_excerpt(body: bytes) -> str:
    """The start of a response body on one line, for error messages."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


def parse_rate(provider: str, currency: object, value: object) -> tuple[str, Decimal]:
    """Check one `currency -> rate` pair from a provider body; anything odd is a malformed body.

    `value` is a `Decimal` already (JSON parsed with `parse_float=Decimal`) or the rate's text.
    """
    if not isinstance(currency, str) or not _CURRENCY_CODE.fullmatch(currency):
        raise TransientProviderError(f"{provider}: malformed body: bad currency code {currency!r}")
    if isinstance(value, str):
        try:
            rate = Decimal(value)
        except InvalidOperation:
            raise TransientProviderError(
                f"{provider}: malformed body: rate {value!r} for {currency} is not a number"
            ) from None
    elif isinstance(value, Decimal):
        rate = value
    else:
        raise TransientProviderError(f"{provider}: malformed body: rate {value!r} for {currency} is not a number")
    if not rate.is_finite() or rate <= 0:
        raise TransientProviderError(f"{provider}: malformed body: rate {value!r} for {currency} is not positive")
    return currency, rate
