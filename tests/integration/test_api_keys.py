"""API keys in PostgreSQL and the per-key token bucket in Redis, on the real servers."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from ces.adapters.postgres.api_keys import PostgresApiKeyStore
from ces.adapters.redis.rate_limit import RedisRateLimiter
from ces.services.api_keys import KeyNameTaken, KeyVerifier, Scope, create_key, key_hash
from ces.services.ports import CacheUnavailable


def test_a_key_is_stored_by_hash_found_listed_and_revoked(pg_schema: tuple[Engine, str], owner_engine: Engine) -> None:
    # Keys are managed by the owner role (`ces keys`); the application role may only look them up.
    app_engine, _ = pg_schema
    engine = owner_engine
    store = PostgresApiKeyStore(engine)
    key, secret = create_key(store, "billing", frozenset({Scope.CONVERT}))

    with engine.connect() as conn:
        stored = conn.execute(text("SELECT key_hash, scopes FROM api_key")).one()
    assert bytes(stored.key_hash) == key_hash(secret) and secret.encode() not in bytes(stored.key_hash)
    assert stored.scopes == ["convert"]
    assert store.find(key_hash(secret)) == key
    assert store.find(key_hash(secret + "x")) is None
    with pytest.raises(KeyNameTaken):
        create_key(store, "billing", frozenset({Scope.READ}))

    revoked = store.revoke(key.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert KeyVerifier(store).verify(secret) is None
    assert [k.name for k in store.all()] == ["billing"]  # kept: audits keep resolving to a name
    assert store.revoke(uuid.uuid4()) is None
    app = PostgresApiKeyStore(app_engine)
    assert app.find(key_hash(secret)) == revoked  # the gateway's role reads keys ...
    with pytest.raises(DBAPIError, match="permission denied"):  # ... and can neither make nor revoke one
        create_key(app, "intruder", frozenset(Scope))
    with pytest.raises(DBAPIError, match="permission denied"):
        app.revoke(key.id)


async def test_the_bucket_allows_the_burst_then_asks_to_wait_and_refills(
    redis_client: aioredis.Redis, unique: str
) -> None:
    limiter = RedisRateLimiter(redis_client, rate=20, burst=5, key_prefix=f"limit-{unique}:")
    key, other = uuid.uuid4(), uuid.uuid4()
    waits = [await limiter.take(key) for _ in range(6)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert 0 < waits[5] <= 0.05 + 0.001  # one token every 50 ms
    assert await limiter.take(other) == 0  # buckets are per key
    deadline = time.monotonic() + 2
    while await limiter.take(key) > 0:  # refills with time
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def count_calls(*limiters: RedisRateLimiter) -> list[int]:
    """Counts the Redis script calls of `limiters` together, in the list's one item."""
    calls = [0]
    for limiter in limiters:
        take = limiter._take

        async def counted(take: object = take, **kwargs: object) -> object:
            calls[0] += 1
            return await take(**kwargs)  # type: ignore[operator]

        limiter._take = counted  # type: ignore[assignment]
    return calls


async def test_concurrent_takes_share_round_trips_and_the_bucket_still_holds(
    redis_client: aioredis.Redis, unique: str
) -> None:
    limiter = RedisRateLimiter(redis_client, rate=0.5, burst=30, key_prefix=f"limit-{unique}:")
    calls = count_calls(limiter)
    key = uuid.uuid4()
    waits = await asyncio.gather(*(limiter.take(key) for _ in range(50)))
    assert waits[:30] == [0] * 30  # in arrival order: the first 30 got the burst ...
    assert all(w > 0 for w in waits[30:])  # ... and the other 20 were refused, as 50 single calls would be
    assert calls[0] < 50  # the takes that arrived during a call went out together
    assert await limiter.take(key) > 0  # nothing was left in the bucket
    assert not limiter._leases[limiter.key_prefix + f"ces:rate-limit:{key}"].calling  # the key is idle again


async def test_an_unreachable_redis_is_cache_unavailable() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        with pytest.raises(CacheUnavailable):
            await RedisRateLimiter(client, rate=1, burst=1).take(uuid.uuid4())
    finally:
        await client.aclose()


async def test_a_batch_takes_one_token_per_item_and_one_bigger_than_the_burst_leaves_a_debt(
    redis_client: aioredis.Redis, unique: str
) -> None:
    limiter = RedisRateLimiter(redis_client, rate=100, burst=10, key_prefix=f"limit-{unique}:")
    key = uuid.uuid4()
    assert await limiter.take(key, 4) == 0
    assert await limiter.take(key, 7) > 0  # 6 left: a batch of 7 must wait, and takes nothing
    assert await limiter.take(key, 6) == 0
    other = uuid.uuid4()
    assert await limiter.take(other, 60) == 0  # a full bucket pays for a batch above its burst ...
    wait = await limiter.take(other)
    assert 0.2 <= wait <= 0.52  # ... and is 50 tokens in debt: 0.5 s at 100/s before the next request


async def _admitted(limiter: RedisRateLimiter, key: uuid.UUID, takes: int) -> int:
    """How many of `takes` concurrent single takes were let through."""
    waits = await asyncio.gather(*(limiter.take(key) for _ in range(takes)))
    return sum(1 for w in waits if w == 0)


async def _bucket(redis_client: aioredis.Redis, limiter: RedisRateLimiter, key: uuid.UUID) -> float:
    tokens = await redis_client.hget(f"{limiter.key_prefix}ces:rate-limit:{key}", "tokens")
    assert tokens is not None
    return float(tokens)


async def test_two_gateways_leasing_one_key_exceed_the_bucket_by_at_most_their_leases(
    redis_client: aioredis.Redis, unique: str
) -> None:
    # Two instances ("gateways") sharing one key's bucket, each with a lease of 5. The bucket barely refills
    # (one token in 1000 s), so what each window admits is countable: at most what the bucket held at its
    # start plus the spare tokens the two instances held then (docs/security.md: N x lease).
    lease, burst = 5, 40
    prefix = f"lease-{unique}:"
    a, b = (RedisRateLimiter(redis_client, rate=0.001, burst=burst, key_prefix=prefix, lease=lease) for _ in "ab")
    key = uuid.uuid4()
    calls = count_calls(a, b)
    # Warm both: sequential takes build up demand, so each instance ends up holding spare tokens.
    admitted = 0
    for _ in range(4):
        admitted += await _admitted(a, key, 1) + await _admitted(b, key, 1)
    held = a._leases[f"{prefix}ces:rate-limit:{key}"].tokens + b._leases[f"{prefix}ces:rate-limit:{key}"].tokens
    assert 0 < held <= 2 * lease
    before = await _bucket(redis_client, a, key)
    assert admitted + held + before == pytest.approx(burst, abs=0.01)  # every token is accounted for
    calls_before = calls[0]
    window = sum(await asyncio.gather(_admitted(a, key, 30), _admitted(b, key, 30)))
    assert window <= int(before) + 2 * lease  # the bound
    assert window == int(before) + held  # here exactly: the bucket's tokens plus the leases, nothing more
    assert admitted + window <= burst  # over the whole run never more than the bucket ever held
    assert calls[0] - calls_before < 60  # far fewer Redis calls than takes
    assert await a.take(key) > 0 and await b.take(key) > 0  # both empty now


async def test_a_busy_key_costs_one_redis_call_per_lease_and_spare_tokens_expire(
    redis_client: aioredis.Redis, unique: str
) -> None:
    now = [0.0]
    limiter = RedisRateLimiter(
        redis_client, rate=0.001, burst=100, key_prefix=f"lease-{unique}:", lease=4, clock=lambda: now[0]
    )
    calls = count_calls(limiter)
    key = uuid.uuid4()
    assert [await limiter.take(key) for _ in range(23)] == [0.0] * 23
    # Calls for 1 (idle: no spare), 2 (one spare), 4 (three), then 5 (the lease of four) each time: 22 takes
    # in 6 calls, and the 23rd's call leases four more.
    assert calls[0] == 7
    tokens = f"{limiter.key_prefix}ces:rate-limit:{key}"
    assert limiter._leases[tokens].tokens == 4
    now[0] += 1.0  # the lease expires: its 4 tokens are dropped, not spent and not given back
    assert await limiter.take(key) == 0
    assert calls[0] == 8
    assert await _bucket(redis_client, limiter, key) == pytest.approx(
        100 - 23 - 4 - 1 - limiter._leases[tokens].tokens, abs=0.01
    )
