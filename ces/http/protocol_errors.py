"""Requests that aiohttp's HTTP parser refuses, answered as problem+json without echoing their bytes.

A request line or header over aiohttp's limits (8190 bytes: a 10,000-digit amount in a query string), a
header with a NUL, a broken chunked body: the parser fails before the application and its middlewares
exist for the request, and aiohttp answers `text/plain` quoting the offending bytes. Every other refusal of
the gateway is problem+json, so these are too, and they quote nothing (the bytes may hold an API key). aiohttp
has no hook for this besides its protocol class, whose `handle_error` is wrapped here once per process.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web, web_protocol

from ces.http.problems import PROBLEM_JSON, PROBLEMS

_original = web_protocol.RequestHandler.handle_error


def problem_for_protocol_error(status: int, exc: BaseException | None) -> web.Response:
    code = "internal_error" if status >= 500 else "malformed_http_request"
    title = PROBLEMS[code][1]
    reason = type(exc).__name__ if exc else "bad request"
    detail = (
        "the gateway could not answer this request"
        if status >= 500
        else f"the HTTP request could not be parsed ({reason}); its bytes are not quoted"
    )
    body = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail, "code": code}
    response = web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON)
    response.force_close()
    return response


def _handle_error(
    self: web_protocol.RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    _original(self, request, status, exc, message)  # aiohttp's logging and its "already sent" check
    return problem_for_protocol_error(status, exc)


def answer_protocol_errors_with_problems() -> None:
    """Idempotent; called by the gateway's bootstrap before it serves."""
    web_protocol.RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
