"""What every FX provider client shares: its HTTP GET, status classification and rate parsing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from ces.events.base import without_query_strings
from ces.services.rate_providers import PermanentProviderError, TransientProviderError

if TYPE_CHECKING:
    import aiohttp

_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_EXCERPT_CHARS = 200


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
    import aiohttp  # here: `ces rates backfill` reads the bundled history through this package, offline

    try:
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            return response.status, await response.read()
    except TimeoutError as exc:
        raise TransientProviderError(f"{provider}: GET {url} timed out after {timeout:g} s") from exc
    except aiohttp.ClientError as exc:
        # aiohttp's errors quote the full URL, query string (a Fixer access key) included.
        detail = without_query_strings(f"{type(exc).__name__}: {exc}")
        raise TransientProviderError(f"{provider}: GET {url} failed: {detail}") from None


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
