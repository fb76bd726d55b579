"""Per-key rate limits in Redis: one token bucket per API key, refilled continuously (the `RateLimiter` port).

One Lua script takes a token atomically, so every gateway instance shares the same bucket. Redis's own
clock (`TIME`) is the only clock used: gateways with skewed clocks cannot refill a bucket early.
"""

from __future__ import annotations

from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ces.services.ports import CacheUnavailable

# KEYS: the bucket. ARGV: rate (tokens/s), burst (bucket size). Returns 0 when a token was taken, else the
# milliseconds until one is available. The bucket expires once it would be full again.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
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

    async def take(self, key_id: UUID) -> float:
        try:
            wait_ms = await self._take(keys=[f"{self.key_prefix}ces:rate-limit:{key_id}"], args=[self.rate, self.burst])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return int(wait_ms) / 1000
