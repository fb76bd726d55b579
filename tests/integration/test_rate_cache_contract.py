"""The Redis rate cache passes the rate cache's contract (its in-memory twin: tests/unit)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ces.adapters.redis.rate_cache import RateCache
from ces.services.ports import RateCache as RateCachePort
from tests.contracts.rate_cache import RateCacheContract


class TestRedisRateCache(RateCacheContract):
    @pytest.fixture
    def cache(self, redis_client: aioredis.Redis, unique: str) -> RateCachePort:
        return RateCache(redis_client, key_prefix=f"contract-{unique}:")

    @pytest.fixture
    async def dead_cache(self) -> AsyncIterator[RateCachePort]:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
        yield RateCache(client, key_prefix="nowhere:")
        await client.aclose()
