"""Per-key rate limits in Redis: one token bucket per API key, refilled continuously (the `RateLimiter` port).

One Lua script takes tokens atomically, so every gateway instance shares the same bucket. Redis's own
clock (`TIME`) is the only clock used: gateways with skewed clocks cannot refill a bucket early. Each
instance takes a busy key's tokens a few at a time (a lease, `RedisRateLimiter`), within a documented bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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


# A process holds lease state for at most this many keys (keys are verified API keys, so few; a bound anyway).
_MAX_KEYS = 10_000


class _Lease:
    """One key on this instance: spare tokens taken from the shared bucket, recent demand, waiting takes."""

    __slots__ = ("calling", "expires", "low", "previous", "recent", "since", "tokens", "waiters")

    def __init__(self, now: float) -> None:
        self.tokens = 0
        self.expires = 0.0
        # The spare tokens at which a take starts the next call in the background (0: when none are left).
        self.low = 0
        # Takes in the current window of `lease_seconds` (from `since`) and in the one before it.
        self.since = now
        self.recent = 0
        self.previous = 0
        self.waiters: list[asyncio.Future[float]] = []
        self.calling = False


class RedisRateLimiter:
    """The shared bucket in Redis, taken from through a small local lease per key.

    A take of one token is served from this instance's lease of the key when it holds an unexpired token;
    otherwise it waits for the key's next call to Redis, which takes in one script call a token for every
    take waiting plus spare tokens up to `lease` held: as many as this key was taken here in the last one to
    two `lease_seconds`, so an idle key leases nothing and a busy one `lease`. Takes that arrive while a call
    is in flight wait for it and go in the next one. A busy key thus costs one Redis call per ~`lease`
    requests instead of one per request (that call was ~10% of the gateway's CPU, docs/http.md). Spare
    tokens not spent within `lease_seconds` of the last call are dropped, never given back: they only make the
    limit stricter.

    The next call starts **ahead**, in the background, when a take leaves an eighth of the last spares (at
    least one): a busy key's takes then never wait for Redis. A take that waited for the call was produced
    apart from the requests around it and split the worker's batches (docs/http.md, "The lease's call
    ahead"); the call ahead asks only for what tops the held spares up to `lease`, so the bound is unchanged.

    The bound (docs/security.md): every token spent was taken from the one shared bucket, atomically and in
    arrival order, so over any window of time the requests admitted for a key by N gateway instances exceed
    what the bucket alone admits in that window by at most N x `lease` (tokens leased before the window and
    spent in it). `lease=0` takes every token from Redis when it is spent, exactly as without leases.

    A batch (`cost > 1`) is charged in Redis directly, all or nothing, never from the lease."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        rate: float,
        burst: int,
        key_prefix: str = "",
        lease: int = 0,
        lease_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or lease < 0 or lease_seconds <= 0:
            raise ValueError("rate must be > 0, burst >= 1, lease >= 0 and lease_seconds > 0")
        self.rate = rate
        self.burst = burst
        self.key_prefix = key_prefix
        self.lease = lease
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._take = client.register_script(_TAKE)
        self._leases: dict[str, _Lease] = {}
        self._calls: set[asyncio.Task[None]] = set()

    async def take(self, key_id: UUID, cost: int = 1) -> float:
        key = f"{self.key_prefix}ces:rate-limit:{key_id}"
        if cost > 1:
            granted, wait = await self._call(key, cost, 1)
            return 0.0 if granted else wait
        now = self.clock()
        held = self._leases.get(key)
        if held is None:
            if len(self._leases) >= _MAX_KEYS:
                self._leases = {k: v for k, v in self._leases.items() if v.calling}
            held = self._leases[key] = _Lease(now)
        elif now - held.since >= self.lease_seconds:
            held.previous = held.recent if now - held.since < 2 * self.lease_seconds else 0
            held.recent = 0
            held.since = now
        held.recent += 1
        if held.tokens > 0:
            if now < held.expires:
                held.tokens -= 1
                if held.tokens <= held.low and not held.calling:
                    self._start_refill(key, held)  # ahead: this take and the next ones do not wait for it
                return 0.0
            held.tokens = 0  # expired: dropped (see the class docstring)
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        held.waiters.append(fut)
        if not held.calling:
            self._start_refill(key, held)
        return await fut

    def _start_refill(self, key: str, held: _Lease) -> None:
        held.calling = True
        task = asyncio.create_task(self._refill(key, held))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _refill(self, key: str, held: _Lease) -> None:
        """Call Redis for `key` until no take of it waits; each call asks for the waiting takes and the spares
        that top the held ones up to the key's recent demand, at most `lease` (a call ahead: spares only)."""
        try:
            while True:  # the first call may be ahead (no take waiting); the next ones are for takes that wait
                waiters, held.waiters = held.waiters, []
                spare = max(0, min(self.lease, held.previous + held.recent - len(waiters)) - held.tokens)
                if not (waiters or spare):
                    return  # ahead, but the held spares already cover the demand
                try:
                    granted, wait = await self._call(key, 1, len(waiters) + spare)
                except BaseException as exc:
                    failure = exc if isinstance(exc, CacheUnavailable) else CacheUnavailable(repr(exc))
                    for fut in [*waiters, *held.waiters]:
                        if not fut.done():
                            fut.set_exception(failure)
                    held.waiters = []
                    if not isinstance(exc, Exception):
                        raise
                    return
                for i, fut in enumerate(waiters):
                    if fut.done():  # cancelled (the caller went away): its token is a spare one
                        held.tokens += 1 if i < granted else 0
                    else:
                        fut.set_result(0.0 if i < granted else wait)
                spares = granted - len(waiters)
                if spares > 0:
                    held.tokens += spares
                    held.low = max(1, spares // 8)
                if held.tokens > 0:
                    held.expires = self.clock() + self.lease_seconds
                # Takes that queued during the call spend what it brought before asking for more.
                while held.waiters and held.tokens > 0:
                    fut = held.waiters.pop(0)
                    if not fut.done():
                        held.tokens -= 1
                        fut.set_result(0.0)
                if not held.waiters:
                    return
        finally:
            held.calling = False

    async def _call(self, key: str, cost: int, count: int) -> tuple[int, float]:
        try:
            granted, wait_ms = await self._take(keys=[key], args=[self.rate, self.burst, max(1, cost), count])
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return int(granted), int(wait_ms) / 1000
