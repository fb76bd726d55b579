"""Requests aiohttp's parser refuses get problem+json that quotes none of their bytes."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from ces.http.protocol_errors import answer_protocol_errors_with_problems


async def _raw(server: TestServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=10)  # the error closes the connection
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def _serve_and_send(request: bytes) -> tuple[int, dict[str, str], bytes]:
    answer_protocol_errors_with_problems()

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/v1/quote", ok)
    server = TestServer(app)
    await server.start_server()
    try:
        return await _raw(server, request)
    finally:
        await server.close()


def test_a_request_line_over_the_limit_is_a_problem_that_quotes_nothing() -> None:
    secret = "9" * 10_000
    status, headers, body = asyncio.run(
        _serve_and_send(f"GET /v1/quote?amount={secret} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    )
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["code"] == "malformed_http_request" and problem["status"] == 400
    assert "9999" not in body.decode()


def test_a_header_with_a_nul_is_a_problem_that_does_not_echo_the_key() -> None:
    status, headers, body = asyncio.run(
        _serve_and_send(b"GET /v1/quote HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ces_sekrit\x00\r\n\r\n")
    )
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["code"] == "malformed_http_request"
    assert b"sekrit" not in body


def test_a_well_formed_request_is_untouched() -> None:
    status, _, body = asyncio.run(_serve_and_send(b"GET /v1/quote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert status == 200 and body == b"ok"
