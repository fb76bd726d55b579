"""The worker's rate reads with Redis's invalidation pushes (CLIENT TRACKING, BCAST), on the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from ces.adapters.redis.rate_cache import RateCache
from ces.adapters.redis.rate_tracking import TRACKING_CLIENT_NAME, RateTracking
from ces.services.ports import CacheUnavailable
from ces.settings import Settings
from tests.fakes import stored_rate
from tests.support import redis_admin_dsn, until

T0 = datetime(2026, 11, 20, 16, 0, 0, 123456, tzinfo=UTC)
USD = ("EUR", "USD")
JPY = ("EUR", "JPY")


@pytest.fixture
async def prefix(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    prefix = f"track-{unique}:"
    yield prefix
    keys = ("EUR:USD", "EUR:JPY", "ces:revoked-rates", "ces:other")
    await redis_client.delete(*(f"{prefix}{key}" for key in keys))


@pytest.fixture
async def tracking(redis_client: aioredis.Redis, prefix: str) -> AsyncIterator[RateTracking]:
    tracking = RateTracking(redis_client, key_prefix=prefix, heartbeat=0.2)
    task = asyncio.create_task(tracking.run())
    await until(tracking.trusted, "the tracking connection is up")
    yield tracking
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class Counted:
    """A tracked reader whose round trips to Redis are counted."""

    def __init__(self, client: aioredis.Redis, prefix: str, tracking: RateTracking) -> None:
        self.cache = RateCache(client, key_prefix=prefix, tracking=tracking)
        self.calls = 0
        ask = self.cache._call_get_changed

        async def counted(*args: Any) -> list[Any]:
            self.calls += 1
            return await ask(*args)

        self.cache._call_get_changed = counted  # type: ignore[method-assign]


@pytest.fixture
def writer(redis_client: aioredis.Redis, prefix: str) -> RateCache:
    """The projection's cache: another instance, so the reader learns of a write only through Redis."""
    return RateCache(redis_client, key_prefix=prefix)


@pytest.fixture
def reader(redis_client: aioredis.Redis, prefix: str, tracking: RateTracking) -> Counted:
    return Counted(redis_client, prefix, tracking)


async def test_a_confirmed_rate_is_reused_without_asking_redis_again(writer: RateCache, reader: Counted) -> None:
    usd, jpy = stored_rate("USD", "1.08", T0), stored_rate("JPY", "161.2", T0)
    await writer.put_many([usd, jpy])
    assert await reader.cache.get_many([USD, JPY]) == [usd, jpy]
    assert reader.calls == 1
    for _ in range(5):
        assert await reader.cache.get_many([USD, JPY]) == [usd, jpy]
        assert await reader.cache.get_many([JPY]) == [jpy]
    assert reader.calls == 1


async def test_a_pair_never_confirmed_is_asked_for(writer: RateCache, reader: Counted) -> None:
    usd, jpy = stored_rate("USD", "1.08", T0), stored_rate("JPY", "161.2", T0)
    await writer.put_many([usd, jpy])
    assert await reader.cache.get_many([USD]) == [usd]
    assert await reader.cache.get_many([USD, JPY]) == [usd, jpy]  # JPY is new to the reader
    assert reader.calls == 2
    assert await reader.cache.get_many([USD, JPY]) == [usd, jpy]
    assert reader.calls == 2


async def test_a_missing_rate_is_asked_for_every_time(reader: Counted) -> None:
    assert await reader.cache.get_many([USD]) == [None]
    assert await reader.cache.get_many([USD]) == [None]
    assert reader.calls == 2


async def test_a_newer_rate_is_read_once_redis_pushed_its_invalidation(
    writer: RateCache, reader: Counted, tracking: RateTracking
) -> None:
    old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(hours=1))
    await writer.put_many([old])
    assert await reader.cache.get_many([USD]) == [old]
    seen = tracking.invalidations
    assert await writer.put_many([new]) == 1
    await until(lambda: tracking.invalidations > seen, "the invalidation of the written key")
    assert await reader.cache.get_many([USD]) == [new]
    assert reader.calls == 2
    assert await reader.cache.get_many([USD]) == [new]  # confirmed again: no round trip
    assert reader.calls == 2


async def test_a_revocation_and_a_deleted_key_reach_the_reader(
    redis_client: aioredis.Redis, writer: RateCache, reader: Counted, tracking: RateTracking
) -> None:
    old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(hours=1))
    await writer.put_many([new])
    assert await reader.cache.get_many([USD]) == [new]
    seen = tracking.invalidations
    assert await writer.revoke(new, old) is True
    await until(lambda: tracking.invalidations > seen, "the revocation's invalidation")
    assert await reader.cache.get_many([USD]) == [old]
    seen = tracking.invalidations
    await redis_client.delete(reader.cache.key(*USD))  # a flushed cache, before its rebuild
    await until(lambda: tracking.invalidations > seen, "the delete's invalidation")
    assert await reader.cache.get_many([USD]) == [None]


async def test_only_rate_keys_push_invalidations_not_the_token_buckets(
    redis_client: aioredis.Redis, writer: RateCache, tracking: RateTracking, prefix: str
) -> None:
    pushed: list[str | None] = []
    tracking.listen(lambda keys: pushed.extend(keys if keys is not None else [None]))
    bucket = f"{prefix}ces:rate-limit:{uuid.uuid4()}"  # a gateway's token bucket: written on every lease call
    await redis_client.hset(bucket, mapping={"tokens": "5", "at": "0"})
    await redis_client.hset(f"{prefix}ces:other", mapping={"a": "1"})
    await redis_client.delete(bucket)
    await writer.put_many([stored_rate("USD", "1.08", T0)])
    # Pushes come in write order on one connection: once the rate key's is in, the others would have been.
    await until(lambda: writer.key(*USD) in pushed, "the rate key's invalidation")
    assert pushed == [writer.key(*USD)]


async def test_a_write_under_way_during_a_read_leaves_the_answer_unconfirmed(
    writer: RateCache, reader: Counted, tracking: RateTracking
) -> None:
    """An invalidation that arrives while a read is in flight may be about a write the read did not see."""
    old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(hours=1))
    await writer.put_many([old])
    ask = reader.cache._call_get_changed

    async def read_then_write(*args: Any) -> list[Any]:
        answer = await ask(*args)
        seen = tracking.invalidations
        await writer.put_many([new])  # lands after the read answered, before the reader looks at the answer
        await until(lambda: tracking.invalidations > seen, "the invalidation")
        return answer

    reader.cache._call_get_changed = read_then_write  # type: ignore[method-assign]
    assert await reader.cache.get_many([USD]) == [old]
    reader.cache._call_get_changed = ask  # type: ignore[method-assign]
    assert await reader.cache.get_many([USD]) == [new]  # asked again, not the held `old`


async def test_without_a_trusted_connection_every_read_asks_redis(
    redis_client: aioredis.Redis, writer: RateCache, prefix: str
) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    tracking = RateTracking(redis_client, key_prefix=prefix, heartbeat=0.2)
    reader = Counted(redis_client, prefix, tracking)
    assert await reader.cache.get_many([USD]) == [usd]  # never started: not trusted
    assert await reader.cache.get_many([USD]) == [usd]
    assert reader.calls == 2

    task = asyncio.create_task(tracking.run())
    await until(tracking.trusted, "tracking up")
    assert REGISTRY.get_sample_value("ces_rate_tracking_up") == 1
    assert await reader.cache.get_many([USD]) == [usd]
    assert await reader.cache.get_many([USD]) == [usd]
    assert reader.calls == 3
    task.cancel()  # the connection is gone: what was confirmed under it is not trusted any more
    await asyncio.gather(task, return_exceptions=True)
    assert not tracking.trusted()
    assert REGISTRY.get_sample_value("ces_rate_tracking_up") == 0
    assert await reader.cache.get_many([USD]) == [usd]
    assert reader.calls == 4


async def test_a_tracking_connection_that_drops_is_replaced_and_trust_waits_for_it(
    settings: Settings, writer: RateCache, reader: Counted, tracking: RateTracking, prefix: str
) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    assert await reader.cache.get_many([USD]) == [usd]
    generation = tracking.generation
    tracking.retry_seconds = 0.05
    # The server closes the connection (as a Redis restart would), found by its tracking prefix.
    admin = aioredis.Redis.from_url(redis_admin_dsn(settings))
    try:
        ids = [c["id"] for c in await admin.client_list() if c.get("name") == TRACKING_CLIENT_NAME]
        killed = 0
        for client_id in ids:
            killed += await admin.execute_command("CLIENT", "KILL", "ID", client_id)
        assert killed >= 1
    finally:
        await admin.aclose()
    await until(lambda: tracking.generation >= generation + 2 and tracking.trusted(), "tracking back")
    calls = reader.calls
    assert await reader.cache.get_many([USD]) == [usd]  # confirmed again under the new connection
    assert reader.calls == calls + 1
    assert await reader.cache.get_many([USD]) == [usd]
    assert reader.calls == calls + 1


async def test_a_redis_that_is_gone_is_unavailable_not_a_held_rate(settings: Settings, unique: str) -> None:
    """Tracking never answers for a Redis it cannot reach: the held rate is not served."""
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    tracking = RateTracking(client, key_prefix=f"gone-{unique}:", heartbeat=0.1, retry_seconds=0.05)
    task = asyncio.create_task(tracking.run())
    try:
        await asyncio.sleep(0.3)
        assert not tracking.trusted()
        with pytest.raises(CacheUnavailable):
            await RateCache(client, key_prefix=f"gone-{unique}:", tracking=tracking).get_many([USD])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_a_redis_that_stops_answering_is_not_trusted_after_two_heartbeats(
    settings: Settings, writer: RateCache, reader: Counted, tracking: RateTracking
) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    assert await reader.cache.get_many([USD]) == [usd]
    admin = aioredis.Redis.from_url(redis_admin_dsn(settings))
    try:
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # the PING goes unanswered
        started = time.monotonic()
        await until(lambda: not tracking.trusted(), "trust lost", deadline=1.4)
        assert time.monotonic() - started <= 2 * tracking.heartbeat + 0.3
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
    calls = reader.calls
    await until(tracking.trusted, "trusted again once Redis answers")
    assert await reader.cache.get_many([USD]) == [usd]
    assert reader.calls == calls + 1  # nothing confirmed before the silence is trusted after it


async def test_a_user_without_client_tracking_leaves_tracking_off(
    settings: Settings, writer: RateCache, prefix: str, unique: str
) -> None:
    admin = aioredis.Redis.from_url(redis_admin_dsn(settings))
    user, password = f"no-tracking-{unique}", f"pw-{unique}"
    await admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "-@all", "+hello", "+auth", "+ping", "+client|setname",
        "+evalsha", "+eval", "+script|load", "+hmget",
    )  # fmt: skip
    client = aioredis.Redis(host=admin.get_connection_kwargs()["host"], port=admin.get_connection_kwargs()["port"],
                            username=user, password=password)  # fmt: skip
    try:
        usd = stored_rate("USD", "1.08", T0)
        await writer.put_many([usd])
        tracking = RateTracking(client, key_prefix=prefix, heartbeat=0.2)
        await asyncio.wait_for(tracking.run(), 5)  # returns: refused for good, no retry loop
        assert tracking.refused is not None and "client|tracking" in tracking.refused
        reader = Counted(client, prefix, tracking)
        assert await reader.cache.get_many([USD]) == [usd]
        assert await reader.cache.get_many([USD]) == [usd]
        assert reader.calls == 2  # every read asks, as without tracking
    finally:
        await client.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
