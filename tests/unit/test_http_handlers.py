"""Gateway handlers with fake services: how outcomes map to HTTP (the real path is in tests/e2e)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.exc import OperationalError

from ces.events.conversions import ConversionRejected
from ces.http.problems import problem_for
from ces.http.query_params import declared_query_params
from ces.services.conversion_requests import BackendUnavailable, IdempotencyConflict, ResultTimeout
from ces.services.ports import TooManyPending
from ces.settings import Settings
from tests.fakes import FakeRequester, audited
from tests.gateway_clients import Client, Gateways

NOW = datetime(2024, 3, 15, 16, tzinfo=UTC)


def stale(request_id: uuid.UUID, base: str, target: str, amount: Decimal) -> ConversionRejected:
    return ConversionRejected(request_id=request_id, reason="stale_rate", message="too old", rejected_at=NOW)


@pytest.fixture
def client_for(gateways: Gateways) -> Callable[[FakeRequester], Awaitable[Client]]:
    async def make(requester: FakeRequester) -> Client:
        return await gateways.start(Settings(gateway_max_body_bytes=16 * 1024), requester=requester)

    return make


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "base_currency": "eur",
        "target_currency": "usd",
        "amount": "100.00",
        "request_id": str(uuid.uuid4()),
        **overrides,
    }


async def test_a_conversion_is_201_with_location_and_upper_cased_codes(client_for: Any) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    response = await client.post("/v1/conversions", json=body())
    payload = await response.json()
    assert response.status == 201
    assert response.headers["Location"] == f"/v1/conversions/{payload['audit_id']}"
    assert payload["output_amount"] == "107.83" and payload["status"] == "audited"
    assert requester.calls[0][1:] == ("EUR", "USD", Decimal("100.00"))


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (stale, 409, "stale_rate"),
        (ResultTimeout(), 504, "result_timeout"),
        (TooManyPending(), 503, "overloaded"),
        (IdempotencyConflict("used before"), 409, "idempotency_conflict"),
        (RuntimeError("boom"), 500, "internal_error"),
        (BackendUnavailable("no answer within the deadline"), 503, "unavailable"),
        (OperationalError("SELECT", {}, ConnectionRefusedError("boom")), 503, "unavailable"),
        (KafkaConnectionError("boom"), 503, "unavailable"),
    ],
)
async def test_outcomes_map_to_problem_statuses(client_for: Any, outcome: Any, status: int, code: str) -> None:
    client = await client_for(FakeRequester(outcome))
    response = await client.post("/v1/conversions", json=body())
    payload = await response.json(content_type=None)
    assert (response.status, payload["code"]) == (status, code)
    assert response.content_type == "application/problem+json"
    assert "Traceback" not in await response.text() and "boom" not in payload["detail"]
    if status == 503:
        assert response.headers["Retry-After"] == "1"


async def test_idempotency_key_header_is_used_and_must_agree_with_the_body(client_for: Any) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    key = str(uuid.uuid4())
    no_id = {k: v for k, v in body().items() if k != "request_id"}
    ok = await client.post("/v1/conversions", json=no_id, headers={"Idempotency-Key": key})
    assert ok.status == 201 and str(requester.calls[-1][0]) == key
    clash = await client.post("/v1/conversions", json=body(), headers={"Idempotency-Key": key})
    assert clash.status == 422 and (await clash.json())["code"] == "idempotency_key_mismatch"
    missing = await client.post("/v1/conversions", json=no_id)
    assert missing.status == 422 and len(requester.calls) == 1  # invalid input never reaches the service


async def test_unknown_routes_and_methods_are_problems_too(client_for: Any) -> None:
    client = await client_for(FakeRequester(audited))
    not_found = await client.get("/v1/nope")
    wrong_method = await client.delete("/v1/conversions")
    assert not_found.status == 404 and (await not_found.json(content_type=None))["code"] == "not_found"
    assert wrong_method.status == 405 and wrong_method.content_type == "application/problem+json"
    # RFC 9110: a 405 names the methods the resource has (GET lists the newest conversions)
    assert set(wrong_method.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    rates = await client.post("/v1/rates/EUR/USD")
    assert rates.status == 405 and set(rates.headers["Allow"].split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,  # deeper than the interpreter's recursion limit
        b'{"request_id": ' + b"9" * 5000 + b"}",  # an integer too long to convert
        b'{"amount": "\\ud800"',  # truncated
        b"\xff\xfe\x00",  # not UTF-8
        b"",
        b"null",
        b'{"base_currency": "EUR", "target_currency": "USD", "amount": "1.00", "amount": "1000.00"}',
    ],
)
async def test_no_body_gets_a_500(client_for: Any, raw: bytes) -> None:
    client = await client_for(FakeRequester(audited))
    response = await client.post("/v1/conversions", data=raw, headers={"Content-Type": "application/json"})
    payload = await response.json(content_type=None)
    assert (response.status, payload["code"]) == (400, "malformed_json")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("amount", "１２", "invalid_amount"),  # fullwidth digits: Decimal() would read 12
        ("amount", "12\n", "invalid_amount"),
        ("amount", "\ud800", "invalid_amount"),
        ("base_currency", "EU\x00", "unknown_currency"),
        ("base_currency", "\ud800SD", "unknown_currency"),
    ],
)
async def test_nasty_values_are_422_and_never_reach_the_service(
    client_for: Any, field: str, value: str, code: str
) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    raw = json.dumps(body(**{field: value})).encode()
    response = await client.post("/v1/conversions", data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 422 and (await response.json(content_type=None))["code"] == code
    assert requester.calls == []


async def test_a_history_range_past_the_calendar_is_a_problem(client_for: Any) -> None:
    client = await client_for(FakeRequester(audited))
    response = await client.get("/v1/rates/EUR/USD/history?start=9999-12-01&end=9999-12-31")
    assert response.status == 422 and (await response.json(content_type=None))["code"] == "invalid_request"


def _concrete(template: str) -> str:
    """A path of the template, path parameters filled with plausible values."""
    values = {"base": "EUR", "target": "USD"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), str(uuid.uuid4())), template)


@pytest.mark.parametrize(
    ("path", "method"),
    sorted(k for k in declared_query_params() if k[1] == "GET"),
)
async def test_every_api_read_refuses_an_undeclared_or_repeated_query_parameter(
    client_for: Any, path: str, method: str
) -> None:
    client = await client_for(FakeRequester(audited))
    url = _concrete(path)
    unknown = await client.get(url, params=[("limt", "10")])
    assert unknown.status == 422 and unknown.content_type == "application/problem+json"
    problem = await unknown.json()
    assert problem["code"] == "invalid_request" and "limt" in problem["detail"]
    declared = sorted(declared_query_params()[(path, method)])
    if declared:  # two values for one name: which one would be used is a guess
        twice = await client.get(url, params=[(declared[0], "a"), (declared[0], "b")])
        assert twice.status == 422 and declared[0] in (await twice.json())["detail"]


async def test_query_strings_outside_the_api_are_left_alone(client_for: Any) -> None:
    client = await client_for(FakeRequester(audited))
    for path in ("/healthz?_=1700000000", "/openapi.json?v=2"):
        response = await client.get(path)
        assert response.status == 200, path


@pytest.mark.parametrize("path", ["/v1/conversions/not-a-uuid", "/v1/conversion-requests/%E2%82%AC", "/v1/rate-rows/1"])
async def test_a_malformed_id_in_the_path_is_a_404_problem(client_for: Any, path: str) -> None:
    client = await client_for(FakeRequester(audited))
    response = await client.get(path)
    assert response.status == 404 and response.content_type == "application/problem+json"
    assert (await response.json())["detail"].endswith("with that id")


@pytest.mark.parametrize("gone", [True, False])
async def test_a_caller_that_hung_up_is_not_a_backend_failure(gone: bool, caplog: pytest.LogCaptureFixture) -> None:
    # The connection reset a handler sees when its caller disconnected mid-request is no outage: it is
    # answered 499 (for the metrics; nobody reads it) without a warning. The same error with the caller
    # still there is a backend's, 503.
    transport = mock.Mock()
    transport.is_closing.return_value = gone
    request = make_mocked_request("POST", "/v1/conversions", transport=transport)

    with caplog.at_level(logging.DEBUG, logger="ces.http.problems"):
        response = problem_for(request, ConnectionResetError("Connection lost"))
    assert response.status == (499 if gone else 503)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (warned == []) is gone
