"""The gateway's key check on fakes: 401 without a valid key, 403 without the scope, 429 past the bucket,
open routes stay open, the caller's key id reaches the conversion, and a verified key is cached."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import REGISTRY

from ces.adapters.redis.rate_limit import RedisRateLimiter
from ces.http.auth import API_KEY, authorize
from ces.http.deps import DEPS
from ces.services.api_keys import ApiKey, KeyVerifier, Scope, create_key, key_hash
from ces.settings import Settings
from tests.fakes import (
    FakeApiKeyStore,
    FakeBucketScript,
    FakeRateLimiter,
    FakeRequester,
    FakeScriptClient,
    audited,
)
from tests.gateway_clients import Client, Gateways, fake_deps
from tests.support import until

Make = Callable[..., Awaitable[Client]]


@pytest.fixture
def gateway(gateways: Gateways) -> Make:
    async def make(
        store: FakeApiKeyStore, limiter: FakeRateLimiter | None = None, requester: FakeRequester | None = None
    ) -> Client:
        return await gateways.start(
            keys=KeyVerifier(store, cache_seconds=60), limiter=limiter, requester=requester or FakeRequester(audited)
        )

    return make


@dataclass
class Checked:
    """A store holding one key, and a verifier on a settable clock (`now[0]`) that checked it once at 0 s."""

    store: FakeApiKeyStore
    key: ApiKey
    secret: str
    verifier: KeyVerifier
    now: list[float]


async def checked(**kwargs: Any) -> Checked:
    store = FakeApiKeyStore()
    key, secret = create_key(store, "k", frozenset(Scope))
    now = [0.0]
    verifier = KeyVerifier(store, cache_seconds=10, clock=lambda: now[0], **kwargs)
    assert await verifier.check(secret) == key
    return Checked(store, key, secret, verifier, now)


def store_down(digest: bytes) -> None:
    raise ConnectionError("database down")


def conversion() -> dict[str, Any]:
    return {"base_currency": "EUR", "target_currency": "USD", "amount": "10.00", "request_id": str(uuid.uuid4())}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ces_not-a-key"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer ces_\u00fcn\u00efcode"},
    ],
)
async def test_no_valid_key_is_401_with_a_challenge(gateway: Make, headers: dict[str, str]) -> None:
    client = await gateway(FakeApiKeyStore())
    response = await client.post("/v1/conversions", json=conversion(), headers=headers)
    assert response.status == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["code"] == "unauthorized"


async def test_a_key_without_the_scope_is_403_and_with_it_the_call_goes_through(gateway: Make) -> None:
    store = FakeApiKeyStore()
    _, reader = create_key(store, "reader", frozenset({Scope.READ}))
    converter, secret = create_key(store, "converter", frozenset({Scope.CONVERT}))
    requester = FakeRequester(audited)
    client = await gateway(store, requester=requester)

    refused = await client.post("/v1/conversions", json=conversion(), headers=bearer(reader))
    assert refused.status == 403
    assert (await refused.json())["code"] == "forbidden"

    accepted = await client.post("/v1/conversions", json=conversion(), headers=bearer(secret))
    assert accepted.status == 201
    assert requester.requested_by == converter.id  # who asked travels with the request

    assert (await client.get("/v1/currencies", headers=bearer(secret))).status == 403
    assert (await client.get("/v1/currencies", headers=bearer(reader))).status == 200


async def test_a_revoked_key_is_refused(gateway: Make) -> None:
    store = FakeApiKeyStore()
    key, secret = create_key(store, "gone", frozenset(Scope))
    store.revoke(key.id)
    client = await gateway(store)
    assert (await client.get("/v1/currencies", headers=bearer(secret))).status == 401


async def test_open_routes_need_no_key(gateway: Make) -> None:
    client = await gateway(FakeApiKeyStore())
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json", "/metrics"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/nowhere")).status == 404  # unknown routes say so without asking for a key


async def test_past_the_bucket_is_429_with_retry_after(gateway: Make) -> None:
    store = FakeApiKeyStore()
    _, secret = create_key(store, "busy", frozenset(Scope))
    client = await gateway(store, FakeRateLimiter(allow=2, wait=1.5))
    statuses = [(await client.get("/v1/currencies", headers=bearer(secret))).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = await client.get("/v1/currencies", headers=bearer(secret))
    assert limited.headers["Retry-After"] == "2"  # rounded up, whole seconds
    assert (await limited.json())["code"] == "rate_limited"


async def test_a_limiter_that_is_down_lets_requests_through(gateway: Make) -> None:
    store = FakeApiKeyStore()
    _, secret = create_key(store, "k", frozenset(Scope))
    client = await gateway(store, FakeRateLimiter(down=True))
    assert (await client.get("/v1/currencies", headers=bearer(secret))).status == 200


async def test_a_verified_key_is_cached_and_a_bad_one_too(gateway: Make) -> None:
    store = FakeApiKeyStore()
    _, secret = create_key(store, "k", frozenset(Scope))
    client = await gateway(store)
    for _ in range(5):
        assert (await client.get("/v1/currencies", headers=bearer(secret))).status == 200
        assert (await client.get("/v1/currencies", headers=bearer("ces_wrong"))).status == 401
    assert store.finds == 2  # one store read per secret within the cache time


async def test_the_verifier_forgets_after_its_cache_time_and_stays_bounded() -> None:
    c = await checked(max_entries=3)
    c.store.revoke(c.key.id)
    c.now[0] = 5.0
    assert await c.verifier.check(c.secret) == c.key  # within the cache time, before its last quarter: the old answer
    assert c.store.finds == 1
    c.now[0] = 10.5
    assert await c.verifier.check(c.secret) is None  # revoked, seen once the cache expired
    assert c.store.finds == 2
    for i in range(10):
        c.verifier.verify(f"ces_random{i}")
    assert len(c.verifier._cache) <= 3
    assert key_hash(c.secret) != key_hash(c.secret + "x")


async def test_requests_that_miss_together_share_one_store_lookup() -> None:
    store = FakeApiKeyStore()
    key, secret = create_key(store, "k", frozenset(Scope))
    verifier = KeyVerifier(store, cache_seconds=10)
    assert await asyncio.gather(*(verifier.check(secret) for _ in range(20))) == [key] * 20
    assert store.finds == 1


async def test_a_key_in_use_is_looked_up_again_ahead_and_its_requests_never_wait() -> None:
    c = await checked()
    release = threading.Event()
    find = c.store.find

    def slow_find(digest: bytes) -> ApiKey | None:
        release.wait(10)  # the store answers only when told: a request waiting for it would hang here
        return find(digest)

    c.store.find = slow_find  # type: ignore[method-assign]
    c.now[0] = 8.0  # the entry's last quarter: served at once, and looked up again in the background, once
    assert [await c.verifier.check(c.secret) for _ in range(5)] == [c.key] * 5
    assert len(c.verifier._lookups) == 1
    c.store.revoke(c.key.id)
    release.set()
    await until(lambda: not c.verifier._lookups, "the background lookup")
    assert c.store.finds == 2
    c.now[0] = 12.0  # past the first lookup's 10 s: the one made at 8 s answers, and it saw the revocation
    assert await c.verifier.check(c.secret) is None
    assert c.store.finds == 2


async def test_a_background_lookup_that_fails_keeps_the_answer_until_it_expires() -> None:
    c = await checked()
    c.store.find = store_down  # type: ignore[method-assign]
    c.now[0] = 9.0
    assert await c.verifier.check(c.secret) == c.key
    await until(lambda: not c.verifier._lookups, "the background lookup")
    assert await c.verifier.check(c.secret) == c.key  # stale if error, as `verify` has it
    with pytest.raises(ConnectionError):
        await c.verifier.check("ces_never-seen")


def test_a_store_outage_keeps_known_keys_working_and_fails_unknown_ones() -> None:
    store = FakeApiKeyStore()
    key, secret = create_key(store, "k", frozenset(Scope))
    now = [0.0]
    verifier = KeyVerifier(store, cache_seconds=10, clock=lambda: now[0])
    assert verifier.verify(secret) == key
    now[0] = 60.0

    store.find = store_down  # type: ignore[method-assign]
    assert verifier.verify(secret) == key  # stale, but the database cannot say otherwise now
    with pytest.raises(ConnectionError):
        verifier.verify("ces_never-seen")


async def test_a_cached_key_and_a_held_lease_pass_the_check_without_suspending() -> None:
    """Nothing on the POST path may wait before the request is published: a request that waits is published
    apart from the ones that arrived with it and splits the worker's batches (docs/http.md, "The lease's call
    ahead"). With the key cached and the lease holding spares, `authorize` completes in one step."""
    store = FakeApiKeyStore()
    _, secret = create_key(store, "k", frozenset(Scope))
    limiter = RedisRateLimiter(FakeScriptClient(FakeBucketScript(10**6)), rate=1000, burst=2000, lease=100)  # type: ignore[arg-type]
    app = web.Application()
    app[DEPS] = fake_deps(Settings(), keys=KeyVerifier(store, cache_seconds=60), limiter=limiter)
    request = make_mocked_request("POST", "/v1/conversions", headers=bearer(secret), app=app)
    for _ in range(20):  # the key's first lookup and the lease's first calls
        assert await authorize(request, "/v1/conversions") is None
        await asyncio.sleep(0)
    for _ in range(500):  # several leases' worth: the next call always went out ahead
        step = authorize(request, "/v1/conversions")
        with pytest.raises(StopIteration) as done:
            step.send(None)  # a suspension would return the awaited future here instead
        assert done.value.value is None and request[API_KEY].name == "k"
        await asyncio.sleep(0)  # the loop runs between requests, and with it a call ahead


async def test_two_authorization_headers_are_refused_even_if_one_is_valid(gateway: Make) -> None:
    from multidict import CIMultiDict

    store = FakeApiKeyStore()
    _, secret = create_key(store, "k", frozenset(Scope))
    client = await gateway(store)
    headers = CIMultiDict([("Authorization", f"Bearer {secret}"), ("Authorization", "Bearer ces_other")])
    assert (await client.get("/v1/currencies", headers=headers)).status == 401


def test_a_request_the_parser_refuses_is_logged_without_its_bytes() -> None:
    import logging

    from aiohttp.http_exceptions import BadHttpMessage

    from ces.http.auth import QuietBadRequests

    secret = "ces_" + "k" * 43
    try:
        raise BadHttpMessage(f"Invalid header value char: b'Authorization: Bearer {secret}\\x00'")
    except BadHttpMessage:
        import sys

        record = logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "Error handling request", (), sys.exc_info())
    assert QuietBadRequests().filter(record) is True  # the event stays
    assert secret not in logging.Formatter().format(record)


def _observed(method: str, route: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "ces_http_request_seconds_count", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


async def test_one_middleware_keeps_the_order_of_the_four_it_replaced(gateway: Make) -> None:
    # The key is checked before the query string (no key and a bad parameter: 401, not 422), the query
    # before the handler, a failure anywhere below (here the key store) is problem+json, and every answer
    # is counted under its route template.
    store = FakeApiKeyStore()
    _, secret = create_key(store, "k", frozenset(Scope))
    limiter = FakeRateLimiter()
    client = await gateway(store, limiter)
    before = {s: _observed("GET", "/v1/currencies", s) for s in (200, 401, 422, 503)}
    assert (await client.get("/v1/currencies?limt=1")).status == 401
    refused = await client.get("/v1/currencies?limt=1", headers=bearer(secret))
    assert refused.status == 422 and refused.content_type == "application/problem+json"
    assert sum(limiter.taken.values()) == 1  # refused for its query after the key paid its token
    assert (await client.get("/v1/currencies", headers=bearer(secret))).status == 200
    store.find = _broken  # type: ignore[method-assign]
    failed = await client.get("/v1/currencies", headers=bearer("ces_" + "n" * 43))
    assert failed.status == 503 and (await failed.json())["code"] == "unavailable"
    for status in (200, 401, 422, 503):
        assert _observed("GET", "/v1/currencies", status) == before[status] + 1
    unmatched = _observed("GET", "unmatched", 404)
    assert (await client.get("/nowhere")).status == 404
    assert _observed("GET", "unmatched", 404) == unmatched + 1


def _broken(digest: bytes) -> None:
    raise ConnectionError("PostgreSQL went away")
