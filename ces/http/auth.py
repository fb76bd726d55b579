"""Who may call what: API keys (`Authorization: Bearer <key>`), their scopes, and the per-key rate limit.

Open without a key: `/healthz`, `/readyz`, `/docs`, `/openapi.json`, `/` and `/dashboard` (the page and its
static files; every data call it makes sends a key), and `/metrics` unless
`CES_METRICS_REQUIRE_KEY` is set. Everything else needs a key with the route's scope: 401 without a valid
key, 403 with a key that lacks the scope, 429 with `Retry-After` once the key's bucket is empty.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web

from ces.http.deps import DEPS
from ces.http.problems import problem
from ces.metrics import AUTH_REFUSALS, CACHE_ERRORS
from ces.services.api_keys import ApiKey, Scope
from ces.services.ports import CacheUnavailable

log = logging.getLogger(__name__)

API_KEY = web.RequestKey("api_key", ApiKey)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ces"'}

# Canonical route -> (method -> scope). Routes not listed are open.
ROUTE_SCOPES: dict[str, dict[str, Scope]] = {
    "/v1/conversions": {"POST": Scope.CONVERT, "GET": Scope.READ},
    "/v1/conversions/batch": {"POST": Scope.CONVERT},
    "/v1/conversions/{audit_id}": {"GET": Scope.READ},
    "/v1/conversion-requests/{request_id}": {"GET": Scope.READ},
    "/v1/rates": {"GET": Scope.READ},
    "/v1/rates/{base}/{target}": {"GET": Scope.READ},
    "/v1/rates/{base}/{target}/history": {"GET": Scope.READ},
    "/v1/currencies": {"GET": Scope.READ},
    "/v1/quote": {"GET": Scope.READ},
    "/v1/timeseries": {"GET": Scope.READ},
    "/v1/fluctuation": {"GET": Scope.READ},
    "/v1/rates/stream": {"GET": Scope.READ},
    "/v1/rate-rows/{rate_id}": {"GET": Scope.READ},
}
METRICS_ROUTE = "/metrics"
# Routes that charge the rate limit themselves, once they know what a request costs (a batch: its items).
SELF_CHARGED = frozenset({"/v1/conversions/batch"})


def required_scope(canonical: str | None, method: str, *, metrics_require_key: bool) -> Scope | None:
    """`canonical`: the matched route's template, None when no route matched (404/405 need no key)."""
    if canonical is None:
        return None
    if canonical == METRICS_ROUTE:
        return Scope.READ if metrics_require_key else None
    scopes = ROUTE_SCOPES.get(canonical)
    return None if scopes is None else scopes.get(method)


class QuietBadRequests(logging.Filter):
    """aiohttp logs a request its parser refuses with the offending header line, which may hold an API key
    (`Authorization: Bearer <key>\\x00`): keep the event, drop the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and type(record.exc_info[1]).__name__ == "BadHttpMessage":
            record.msg = "refused a malformed HTTP request (%s); its bytes are not logged"
            record.args = (type(record.exc_info[1]).__name__,)
            record.exc_info = None
            record.exc_text = None
        return True


def bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token and len(token) <= 200 else None


async def authorize(request: web.Request, canonical: str | None) -> web.Response | None:
    """The 401/403/429 refusal for this request, or None (and the caller's key in `request[API_KEY]`).

    `canonical`: the matched route's template (None: no route matched)."""
    deps = request.app[DEPS]
    if deps.keys is None:
        return None  # CES_API_KEYS_REQUIRED=false: an operator's explicit choice
    scope = required_scope(canonical, request.method, metrics_require_key=deps.settings.metrics_require_key)
    if scope is None:
        return None
    given = request.headers.getall("Authorization", [])
    # Two credentials are ambiguous (which one did a proxy check?): refused, like repeated JSON keys.
    secret = bearer_token(given[0]) if len(given) == 1 else None
    if secret is None:
        AUTH_REFUSALS.labels("missing").inc()
        return problem("unauthorized", "send `Authorization: Bearer <API key>`", headers=CHALLENGE)
    key = await deps.keys.check(secret)
    if key is None:
        AUTH_REFUSALS.labels("invalid").inc()
        return problem("unauthorized", "unknown or revoked API key", headers=CHALLENGE)
    if scope not in key.scopes:
        AUTH_REFUSALS.labels("scope").inc()
        return problem("forbidden", f"this API key lacks the `{scope.value}` scope")
    if deps.limiter is not None and canonical not in SELF_CHARGED:
        try:
            wait = await deps.limiter.take(key.id)
        except CacheUnavailable as exc:
            # Fail open: Redis down must not take the gateway down with it; counted and logged.
            CACHE_ERRORS.labels("rate_limit").inc()
            log.warning("rate limiter unavailable (%s); request let through", exc)
            wait = 0.0
        if wait > 0:
            AUTH_REFUSALS.labels("rate_limited").inc()
            return problem(
                "rate_limited",
                f"rate limit of this API key reached; retry in {wait:.3g}s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    request[API_KEY] = key
    return None
