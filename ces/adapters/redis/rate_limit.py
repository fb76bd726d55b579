"""Per-key rate limits in Redis: one token bucket per API key, refilled continuously (the `RateLimiter` port).

One Lua script takes tokens atomically, so every gateway instance shares the same bucket. Redis's own
clock (`TIME`) is the only clock used: gateways with skewed clocks cannot refill a bucket early.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ces.services.ports import CacheUnavailable

# KEYS: the bucket. ARGV: rate (tokens/s), burst (bucket size), cost (tokens per take), count (takes, in arrival
# order). Returns {granted, wait}: how many of the takes got their cost, and for the others the milliseconds
# until one can. Taking one by one in the script is what `count` separate calls arriving together would do,
# so several takes in one call change nothing about the limit. A cost above the burst is taken from a full
# bucket and leaves it in debt (negative tokens), so a 10,000-item batch is possible but paid for in full
# before the next one. The bucket expires once it would be full again.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local need = math.min(cost, burst)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local granted = 0
while granted < count and tokens >= need do
  tokens = tokens - cost
  granted = granted + 1
end
local wait = 0
if granted < count then
  wait = math.ceil((need - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - math.min(tokens, 0)) * 1000 / rate) + 1000)
return {granted, wait}
"""


class RedisRateLimiter:
    """Takes of one token for the same key that arrive while a call for that key is in flight wait for it and
    then go to Redis together, as one script call (`count`): under load one round trip serves many requests
    (a Redis call per request was ~15% of the gateway's CPU, docs/http.md). The first take of an idle key goes
    out at once, so nothing waits that would not have; every token is still taken in Redis, atomically, from
    the one bucket all gateway instances share."""

    def __init__(self, client: aioredis.Redis, *, rate: float, burst: int, key_prefix: str = "") -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.key_prefix = key_prefix
        self._take = client.register_script(_TAKE)
        # Per key with a call in flight: the single takes that arrived since, waiting for the next call.
        self._queued: dict[str, list[asyncio.Future[float]]] = {}
        self._flushes: set[asyncio.Task[None]] = set()

    async def take(self, key_id: UUID, cost: int = 1) -> float:
        key = f"{self.key_prefix}ces:rate-limit:{key_id}"
        if cost > 1:
            granted, wait = await self._call(key, cost, 1)
            return 0.0 if granted else wait
        queue = self._queued.get(key)
        if queue is not None:
            fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            queue.append(fut)
            return await fut
        self._queued[key] = []
        try:
            granted, wait = await self._call(key, 1, 1)
        finally:
            self._next(key)
        return 0.0 if granted else wait

    def _next(self, key: str) -> None:
        """The call for `key` returned: send what queued behind it as one call, or mark the key idle."""
        queued = self._queued.pop(key, [])
        if queued:
            self._queued[key] = []
            task = asyncio.create_task(self._flush(key, queued))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, key: str, waiters: list[asyncio.Future[float]]) -> None:
        try:
            granted, wait = await self._call(key, 1, len(waiters))
        except BaseException as exc:
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, CacheUnavailable) else CacheUnavailable(repr(exc)))
            if not isinstance(exc, Exception):
                raise
        else:
            for i, fut in enumerate(waiters):
                if not fut.done():
                    fut.set_result(0.0 if i < granted else wait)
        finally:
            self._next(key)

    async def _call(self, key: str, cost: int, count: int) -> tuple[int, float]:
        try:
            granted, wait_ms = await self._take(keys=[key], args=[self.rate, self.burst, max(1, cost), count])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return int(granted), int(wait_ms) / 1000
