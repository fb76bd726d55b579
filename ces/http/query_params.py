"""Query strings of the `/v1/` API checked against the OpenAPI contract: undeclared or repeated names are refused.

Refused rather than ignored: a misspelt `as_of` or `limt` that quietly answers something else, or two values
of one name of which the gateway would pick one, is worse than a 400 the caller sees at once. The names
allowed are those `openapi.json` documents for the operation, so the contract and the check cannot drift.
"""

from __future__ import annotations

from functools import cache

from aiohttp import web

from ces.http.openapi import openapi_document
from ces.http.problems import problem

API_PREFIX = "/v1/"
# The longest refusal message: a caller sending thousands of names gets a readable answer, not an echo.
MAX_NAMES_SHOWN = 200


@cache
def declared_query_params() -> dict[tuple[str, str], frozenset[str]]:
    """(path template, METHOD) -> the query parameter names the contract declares (an empty set: none)."""
    return {
        (path, method.upper()): frozenset(p["name"] for p in op.get("parameters", ()) if p["in"] == "query")
        for path, operations in openapi_document()["paths"].items()
        if path.startswith(API_PREFIX)
        for method, op in operations.items()
    }


def query_problem(request: web.Request, canonical: str | None) -> web.Response | None:
    """The 400 for an undeclared or repeated query parameter of a `/v1/` operation, or None.

    `canonical`: the matched route's template (None: no route matched)."""
    if canonical is None or not request.query_string:
        return None
    allowed = declared_query_params().get((canonical, request.method))
    if allowed is None:
        return None  # not an API operation (dashboard, static files, health, metrics)
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        return problem("invalid_request", f"unknown query parameter(s): {', '.join(unknown)[:MAX_NAMES_SHOWN]}")
    repeated = sorted(name for name in set(request.query) if len(request.query.getall(name)) > 1)
    if repeated:
        return problem("invalid_request", f"query parameter(s) given more than once: {', '.join(repeated)}")
    return None
