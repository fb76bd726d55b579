"""RFC 9457 problem details: every error the gateway returns, with a stable `type` and `code`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from ces.adapters.failures import Failure, classify

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# code -> (HTTP status, title). The `type` of a problem is `/problems/<code>`, documented in docs/http.md.
PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "The body is not a JSON object"),
    "malformed_http_request": (400, "The HTTP request could not be parsed"),
    "invalid_request": (422, "The request is not valid"),
    "invalid_amount": (422, "The amount is not valid"),
    "unknown_currency": (422, "Unknown currency"),
    "unsupported_pair": (422, "Unsupported currency pair"),
    "invalid_as_of": (422, "as_of is not a date or an RFC 3339 instant"),
    "as_of_in_future": (422, "as_of is in the future"),
    "invalid_range": (422, "The date range is not valid"),
    "idempotency_key_mismatch": (422, "request_id and Idempotency-Key differ"),
    "unauthorized": (401, "A valid API key is required"),
    "forbidden": (403, "The API key lacks the scope for this request"),
    "rate_limited": (429, "Rate limit of this API key reached"),
    "no_rate": (404, "No rate for this pair"),
    "not_found": (404, "Not found"),
    "stale_rate": (409, "The newest rate is too old"),
    "idempotency_conflict": (409, "This request_id was used for a different conversion"),
    "method_not_allowed": (405, "Method not allowed"),
    "payload_too_large": (413, "The body is too large"),
    "too_many_items": (413, "The batch has more items than allowed"),
    "duplicate_request_id": (422, "A request_id appears more than once in the batch"),
    "unsupported_media_type": (415, "Send application/json"),
    "overloaded": (503, "Too many conversions in flight; retry later"),
    "not_ready": (503, "A dependency is unavailable"),
    "unavailable": (503, "A backend is unavailable; retry later"),
    "result_timeout": (504, "No result within the gateway timeout"),
    "internal_error": (500, "Internal error"),
    # The worker did not accept this gateway's signature: the two hold different CES_REQUEST_SIGNING_KEYs.
    "unauthenticated_requester": (500, "The worker could not authenticate the gateway's request"),
}


UuidText = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class Problem(BaseModel):
    """RFC 9457 problem details; `type` is `/problems/<code>`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="/problems/<code>")
    title: str
    status: int
    detail: str
    code: Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(PROBLEMS)})]
    request_id: UuidText | SkipJsonSchema[None] = Field(
        default=None, description="the conversion's request id, when there is one"
    )
    rejected_at: str | SkipJsonSchema[None] = Field(
        default=None, description="when a conversion was rejected (RFC 3339)"
    )
    checks: dict[str, str] | SkipJsonSchema[None] = Field(
        default=None, description="not_ready: each failing dependency"
    )
    duplicates: list[UuidText] | SkipJsonSchema[None] = Field(
        default=None, description="duplicate_request_id: the request ids repeated in the batch (at most 100)"
    )


def problem_body(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem's JSON object, as a response body or as one item's result in a batch."""
    status, title = PROBLEMS[code]
    return Problem.model_construct(
        type=f"/problems/{code}", title=title, status=status, detail=detail, code=code, **extra
    ).model_dump(mode="json", exclude_unset=True)


def problem(code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = problem_body(code, detail, **extra)
    status = body["status"]
    if status == 503:
        headers = {**(headers or {}), "Retry-After": "1"}
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON, headers=headers)


def path_uuid(request: web.Request, name: str, what: str) -> UUID | web.Response:
    """The path's `name` as a UUID, or the 404 for `what`: a malformed id names no resource, like an unknown one."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        return problem("not_found", f"no {what} with that id")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED_REQUEST = 499


def _caller_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def problem_for(request: web.Request, exc: Exception) -> web.StreamResponse:
    """Turn aiohttp's HTTP errors and anything unexpected into problem+json; never leak a stack trace.

    An `HTTPException` below 400 (a redirect) is not an error: it is raised again."""
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
        # A 405 must say which methods the resource has (RFC 9110 15.5.6); aiohttp put them in `Allow`.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem(code.get(exc.status, "invalid_request"), exc.reason or exc.text or "", headers=allow)
    if _caller_gone(request):
        # The caller hung up before its answer (a client timeout, a load generator stopping): nothing
        # failed on our side, so no "backend unavailable" warning and no 503 in the metrics. 499 is
        # nginx's "client closed request"; nobody receives it.
        log.debug("%s %s: the caller disconnected: %s", request.method, request.path, type(exc).__name__)
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    if classify(exc) is Failure.TRANSIENT:
        # Kafka, PostgreSQL or Redis down: the caller can retry (conversions with the same request_id).
        log.warning("%s %s: backend unavailable: %s: %s", request.method, request.path, type(exc).__name__, exc)
        return problem("unavailable", f"a backend is unavailable ({type(exc).__name__}); retry later")
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem("internal_error", "an unexpected error occurred; it has been logged")
