"""The Redis rate cache's reader reuses a decoded rate only while Redis still holds that very rate (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from ces.adapters.redis.rate_cache import RateCache
from ces.services.ports import CacheUnavailable
from tests.fakes import stored_rate

T0 = datetime(2026, 11, 20, 16, 0, 0, 123456, tzinfo=UTC)
USD = ("EUR", "USD")
JPY = ("EUR", "JPY")


@pytest.fixture
async def prefix(redis_client: aioredis.Redis, unique: str) -> AsyncIterator[str]:
    prefix = f"reuse-{unique}:"
    yield prefix
    await redis_client.delete(f"{prefix}EUR:USD", f"{prefix}EUR:JPY", f"{prefix}ces:revoked-rates")


@pytest.fixture
def writer(redis_client: aioredis.Redis, prefix: str) -> RateCache:
    """The projection's cache: a separate instance, so the reader learns of a write only through Redis."""
    return RateCache(redis_client, key_prefix=prefix)


@pytest.fixture
def reader(redis_client: aioredis.Redis, prefix: str) -> RateCache:
    return RateCache(redis_client, key_prefix=prefix)


async def test_an_unchanged_rate_is_decoded_once_and_reused(writer: RateCache, reader: RateCache) -> None:
    usd = stored_rate("USD", "1.08920", T0)
    await writer.put_many([usd])
    first = await reader.get_many([USD, JPY])
    again = await reader.get_many([USD, JPY])
    assert first == [usd, None]
    assert again[0] is first[0]  # the same object: not decoded again
    assert again[1] is None


async def test_a_newer_rate_replaces_the_reused_one_at_once(writer: RateCache, reader: RateCache) -> None:
    old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(hours=1))
    await writer.put_many([old])
    assert await reader.get_many([USD]) == [old]
    assert await writer.put_many([new]) == 1
    assert await reader.get_many([USD]) == [new]
    assert (await reader.get_many([USD]))[0].rate_id == new.rate_id


async def test_a_revocation_falls_back_for_the_reader_too(writer: RateCache, reader: RateCache) -> None:
    old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(hours=1))
    await writer.put_many([new])
    assert await reader.get_many([USD]) == [new]
    assert await writer.revoke(new, old) is True  # the one move backwards: an older order
    assert await reader.get_many([USD]) == [old]


async def test_a_fallback_of_the_same_instants_is_not_taken_for_the_revoked_rate(
    writer: RateCache, reader: RateCache
) -> None:
    # Same published_at and fetched_at, so the same `order`: only the rate id tells them apart.
    cached = stored_rate("USD", "1.09", T0)
    twin = replace(cached, rate_id=uuid4(), rate_value=cached.rate_value + 1)
    await writer.put_many([cached])
    assert await reader.get_many([USD]) == [cached]
    assert await writer.revoke(cached, twin) is True
    assert await reader.get_many([USD]) == [twin]


async def test_a_deleted_key_is_a_miss_not_the_reused_rate(
    redis_client: aioredis.Redis, writer: RateCache, reader: RateCache
) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    assert await reader.get_many([USD]) == [usd]
    await redis_client.delete(reader.key(*USD))  # a flushed cache, before its rebuild
    assert await reader.get_many([USD]) == [None]
    await writer.put_many([usd])  # the rebuild
    assert await reader.get_many([USD]) == [usd]


async def test_a_hash_missing_a_field_is_a_miss(redis_client: aioredis.Redis, reader: RateCache) -> None:
    await redis_client.hset(reader.key(*USD), mapping={"order": "1", "rate_id": str(uuid4())})
    assert await reader.get_many([USD]) == [None]  # read PostgreSQL rather than crash on a partial hash


async def test_a_cache_outage_is_reported_even_with_rates_decoded(writer: RateCache, prefix: str) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    assert await writer.get_many([USD]) == [usd]
    dead_client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        dead = RateCache(dead_client, key_prefix=prefix)
        dead._decoded = dict(writer._decoded)  # as if it had read before the outage
        with pytest.raises(CacheUnavailable):
            await dead.get_many([USD])
    finally:
        await dead_client.aclose()


async def test_a_connection_that_broke_while_held_is_replaced_without_an_error(
    writer: RateCache, reader: RateCache
) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    assert await reader.get_many([USD]) == [usd]
    (held,) = reader._readers
    # The socket dies under the held connection, as when Redis restarts (the app user may not CLIENT KILL).
    broken = held._writer
    broken.transport.abort()
    assert await reader.get_many([USD]) == [usd]  # one retry, on a new socket
    assert reader._readers[0]._writer is not broken


async def test_a_script_redis_forgot_is_loaded_again(writer: RateCache, reader: RateCache) -> None:
    usd = stored_rate("USD", "1.08", T0)
    await writer.put_many([usd])
    reader._get_changed.sha = "0" * 40  # as after a restart: Redis answers NOSCRIPT
    assert await reader.get_many([USD]) == [usd]
    assert reader._get_changed.sha != "0" * 40


async def test_a_redis_that_does_not_answer_is_unavailable_within_the_socket_timeout() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, reads, never answers

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        cache = RateCache(client, key_prefix="hung:")
        started = asyncio.get_running_loop().time()
        with pytest.raises(CacheUnavailable):
            await cache.get_many([USD])
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
