"""POST /v1/conversions/batch with fake services: slots in order, whole-batch refusals, limits, the rate limit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from ces.events.conversions import ConversionRejected
from ces.http.schemas import Conversion, audit_json
from ces.services.api_keys import KeyVerifier, Scope, create_key
from ces.services.conversion_requests import BackendUnavailable, IdempotencyConflict, Overloaded, ResultTimeout
from ces.settings import Settings
from tests.fakes import (
    DECIDED_AT,
    FakeApiKeyStore,
    FakeRateLimiter,
    FakeRequester,
    audited,
)
from tests.gateway_clients import Client, Gateways

SETTINGS = Settings(gateway_max_batch_items=50, gateway_max_batch_body_bytes=64 * 1024)


@pytest.fixture
def client_for(gateways: Gateways) -> Callable[..., Awaitable[Client]]:
    async def make(
        requester: FakeRequester, *, limiter: FakeRateLimiter | None = None, keys: FakeApiKeyStore | None = None
    ) -> Client:
        verifier = KeyVerifier(keys, cache_seconds=60) if keys is not None else None
        return await gateways.start(SETTINGS, requester=requester, keys=verifier, limiter=limiter)

    return make


def item(**overrides: Any) -> dict[str, Any]:
    return {"base_currency": "eur", "target_currency": "usd", "amount": "100.00", "request_id": str(uuid.uuid4())}


def with_(**overrides: Any) -> dict[str, Any]:
    return {**item(), **overrides}


async def post(client: Client, body: Any, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post(
        "/v1/conversions/batch", data=data, headers={"Content-Type": "application/json", **headers}
    )
    return response.status, await response.json(content_type=None)


async def test_results_come_one_per_item_in_order_and_invalid_items_are_never_requested(client_for: Any) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    items = [item(), with_(amount=100), item(), with_(base_currency="XXX"), with_(request_id=None), item()]
    status, answer = await post(client, {"items": items})
    assert status == 200
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["outcome"] for r in results] == ["audited", "refused", "audited", "refused", "refused", "audited"]
    assert [r["status"] for r in results] == [201, 422, 201, 422, 422, 201]
    assert results[1]["problem"]["code"] == "invalid_amount"
    assert results[3]["problem"]["code"] == "unknown_currency"
    assert results[3]["request_id"] == items[3]["request_id"]
    assert "request_id" not in results[4] and results[4]["problem"]["code"] == "invalid_request"
    for slot, sent in zip([results[0], results[2], results[5]], [items[0], items[2], items[5]], strict=True):
        assert slot["request_id"] == slot["conversion"]["request_id"] == sent["request_id"]
        assert slot["conversion"]["base_currency"] == "EUR"  # read exactly as the single endpoint reads it
    assert answer["counts"] == {"audited": 3, "rejected": 0, "refused": 3, "undecided": 0}
    assert requester.batches == [3]
    assert [str(c[0]) for c in requester.calls] == [items[i]["request_id"] for i in (0, 2, 5)]


async def test_each_outcome_is_the_single_endpoints_answer_in_its_slot(client_for: Any) -> None:
    outcomes: list[Any] = [
        lambda rid, *_: ConversionRejected(request_id=rid, reason="stale_rate", message="old", rejected_at=DECIDED_AT),
        IdempotencyConflict("converted 5 EUR->USD"),
        ResultTimeout(),
        Overloaded(),
        BackendUnavailable("broker down"),
    ]
    expected = [
        ("rejected", 409, "stale_rate"),
        ("refused", 409, "idempotency_conflict"),
        ("undecided", 504, "result_timeout"),
        ("undecided", 503, "overloaded"),
        ("undecided", 503, "unavailable"),
    ]
    for outcome, (kind, status_code, code) in zip(outcomes, expected, strict=True):
        client = await client_for(FakeRequester(outcome))
        status, answer = await post(client, {"items": [item()]})
        (slot,) = answer["results"]
        assert status == 200 and (slot["outcome"], slot["status"], slot["problem"]["code"]) == (kind, status_code, code)
        assert slot["problem"]["status"] == status_code and slot["problem"]["type"] == f"/problems/{code}"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ([item()], 400, "malformed_json"),  # a bare list: the body must be an object
        ({"items": item()}, 422, "invalid_request"),  # items not a list
        ({"items": []}, 422, "invalid_request"),
        ({"items": [item()], "extra": 1}, 422, "invalid_request"),
        ({"items": [item(), "USD", 7, None]}, 422, "invalid_request"),  # items of the wrong type
        ({"items": [item() for _ in range(51)]}, 413, "too_many_items"),
        (b'{"items": [\xff]}', 400, "malformed_json"),  # not UTF-8
        (b'{"items": [{"a": 1}', 400, "malformed_json"),
        (b'{"items": [], "items": [{}]}', 400, "malformed_json"),  # a repeated key
    ],
)
async def test_a_malformed_batch_is_refused_whole_and_nothing_is_requested(
    client_for: Any, body: Any, status: int, code: str
) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    got, answer = await post(client, body)
    assert (got, answer["code"]) == (status, code)
    assert requester.calls == []


async def test_a_request_id_twice_in_one_batch_refuses_it_and_names_the_duplicates(client_for: Any) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    twice = item()
    invalid_twice = with_(amount="-1")
    status, answer = await post(client, {"items": [twice, item(), twice, invalid_twice, {**invalid_twice}]})
    assert (status, answer["code"]) == (422, "duplicate_request_id")
    assert sorted(answer["duplicates"]) == sorted([twice["request_id"], invalid_twice["request_id"]])
    assert requester.calls == []


async def test_the_batch_body_limit_is_its_own_and_the_single_endpoint_keeps_16_kib(client_for: Any) -> None:
    client = await client_for(FakeRequester(audited))
    items = [item() for _ in range(40)]
    padded = {"items": items}
    raw = json.dumps(padded).encode()
    assert 16 * 1024 > len(raw) > 4 * 1024
    long_item = json.dumps({"items": [with_(amount="1" + " " * 20_000)]}).encode()  # 20 KB: over 16 KiB
    status, answer = await post(client, long_item)
    assert status == 200 and answer["results"][0]["problem"]["code"] == "invalid_amount"
    assert len(json.dumps(answer)) < 2000  # the problem does not echo the huge input
    single = await client.post(
        "/v1/conversions",
        data=json.dumps(with_(amount="1" + " " * 20_000)),
        headers={"Content-Type": "application/json"},
    )
    assert single.status == 413
    huge = json.dumps({"items": [with_(base_currency="U" * 70_000)]}).encode()
    status, answer = await post(client, huge)
    assert (status, answer["code"]) == (413, "payload_too_large")


async def test_a_batch_is_charged_one_token_per_item_and_refused_whole_when_the_bucket_is_short(
    client_for: Any,
) -> None:
    keys = FakeApiKeyStore()
    key, secret = create_key(keys, "batcher", frozenset({Scope.CONVERT}))
    limiter = FakeRateLimiter(allow=30)
    requester = FakeRequester(audited)
    client = await client_for(requester, limiter=limiter, keys=keys)
    auth = {"Authorization": f"Bearer {secret}"}
    status, answer = await post(client, {"items": [item() for _ in range(20)]}, **auth)
    assert status == 200 and limiter.taken[key.id] == 20  # per item, not per request
    status, answer = await post(client, {"items": [item() for _ in range(20)]}, **auth)
    assert (status, answer["code"]) == (429, "rate_limited")
    assert requester.batches == [20]  # the refused batch published nothing
    unauthenticated, _ = await post(client, {"items": [item()]})
    assert unauthenticated == 401


async def test_a_batch_with_an_idempotency_key_header_is_refused(client_for: Any) -> None:
    client = await client_for(FakeRequester(audited))
    status, answer = await post(client, {"items": [item()]}, **{"Idempotency-Key": str(uuid.uuid4())})
    assert (status, answer["code"]) == (422, "invalid_request")


async def test_amounts_stay_decimal_strings_in_the_slots(client_for: Any) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    status, answer = await post(client, {"items": [with_(amount="0.10")]})
    assert status == 200 and answer["results"][0]["conversion"]["input_amount"] == "0.10"
    assert requester.calls[0][3] == Decimal("0.10")


def test_an_audit_is_dumped_as_the_conversion_schema_says() -> None:
    decision = audited(uuid.uuid4(), "EUR", "USD", Decimal("100.00"))
    body = audit_json(decision)
    assert Conversion.model_validate(body).json_body() == body
    assert set(Conversion.model_fields) - set(body) == {"as_of"}  # absent when priced now


async def test_the_batch_path_is_the_batch_routes_alone(client_for: Any) -> None:
    client = await client_for(FakeRequester(audited))
    for method in ("GET", "PUT"):
        response = await client.request(method, "/v1/conversions/batch")
        assert response.status == 405 and response.headers["Allow"] == "POST"  # not GET of an audit id
    missing = await client.get(f"/v1/conversions/{uuid.uuid4()}")
    assert missing.status == 404


async def test_as_of_flows_into_batch_items_as_into_single_requests(client_for: Any) -> None:
    requester = FakeRequester(audited)
    client = await client_for(requester)
    items = [with_(as_of="2010-05-07"), with_(as_of="2999-01-01"), with_(as_of="yesterday")]
    status, answer = await post(client, {"items": items})
    assert status == 200 and requester.as_of == "2010-05-07"
    assert [r["outcome"] for r in answer["results"]] == ["audited", "refused", "refused"]
    assert [r["problem"]["code"] for r in answer["results"][1:]] == ["as_of_in_future", "invalid_as_of"]


async def test_a_batch_is_charged_before_its_items_are_read_so_a_refused_one_costs_its_items_too(
    client_for: Any,
) -> None:
    # Reading 10,000 items is the gateway's dearest work on this route; uncharged, a caller out of tokens
    # could make it do that again and again with batches it knows will be refused (a duplicated id).
    keys = FakeApiKeyStore()
    key, secret = create_key(keys, "batcher", frozenset({Scope.CONVERT}))
    limiter = FakeRateLimiter(allow=30)
    requester = FakeRequester(audited)
    client = await client_for(requester, limiter=limiter, keys=keys)
    auth = {"Authorization": f"Bearer {secret}"}
    same = item()
    status, answer = await post(client, {"items": [same] * 20}, **auth)
    assert (status, answer["code"], limiter.taken[key.id]) == (422, "duplicate_request_id", 20)
    status, answer = await post(client, {"items": [same] * 20}, **auth)
    assert (status, answer["code"]) == (429, "rate_limited")
    assert requester.batches == []


async def test_a_request_id_shared_with_an_item_refused_by_the_schema_is_a_duplicate_too(client_for: Any) -> None:
    # The refusal of a JSON-number amount carries no request_id; the id is in the item all the same, and one
    # id must not be both refused and converted in one batch.
    requester = FakeRequester(audited)
    client = await client_for(requester)
    valid = item()
    for spelling in (valid["request_id"], valid["request_id"].upper()):
        bad = {**valid, "request_id": spelling, "amount": 100}
        status, answer = await post(client, {"items": [bad, valid]})
        assert (status, answer["code"], answer.get("duplicates")) == (
            422,
            "duplicate_request_id",
            [valid["request_id"]],
        )
    assert requester.calls == []
