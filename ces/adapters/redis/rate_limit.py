"""Per-key rate limits in Redis: one token bucket per API key, refilled continuously (the `RateLimiter` port).

One Lua script takes a token atomically, so every gateway instance shares the same bucket. Redis's own
clock (`TIME`) is the only clock used: gateways with skewed clocks cannot refill a bucket early.
"""

from __future__ import annotations

from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ces.services.ports import CacheUnavailable

# KEYS: the bucket. ARGV: rate (tokens/s), burst (bucket size), cost (tokens). Returns 0 when the cost was
# taken, else the milliseconds until it can be. A cost above the burst is taken from a full bucket and leaves
# it in debt (negative tokens), so a 10,000-item batch is possible but paid for in full before the next one.
# The bucket expires once it would be full again.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local need = math.min(cost, burst)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait = 0
if tokens >= need then
  tokens = tokens - cost
else
  wait = math.ceil((need - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - math.min(tokens, 0)) * 1000 / rate) + 1000)
return wait
"""


class RedisRateLimiter:
    def __init__(self, client: aioredis.Redis, *, rate: float, burst: int, key_prefix: str = "") -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.key_prefix = key_prefix
        self._take = client.register_script(_TAKE)

    async def take(self, key_id: UUID, cost: int = 1) -> float:
        key = f"{self.key_prefix}ces:rate-limit:{key_id}"
        try:
            wait_ms = await self._take(keys=[key], args=[self.rate, self.burst, max(1, cost)])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return int(wait_ms) / 1000
