"""The token bucket's local lease (`RedisRateLimiter`), against an in-memory stand-in for the Redis script."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from ces.adapters.redis.rate_limit import RedisRateLimiter
from ces.services.ports import CacheUnavailable
from tests.fakes import FakeBucketScript as FakeScript
from tests.fakes import FakeScriptClient as FakeClient


def limiter(tokens: int, **kwargs: Any) -> tuple[RedisRateLimiter, FakeScript]:
    script = FakeScript(tokens)
    return RedisRateLimiter(FakeClient(script), rate=1, burst=10**6, **kwargs), script  # type: ignore[arg-type]


async def test_without_a_lease_every_take_is_one_call_for_one_token() -> None:
    rl, script = limiter(3, lease=0)
    key = uuid.uuid4()
    assert [await rl.take(key) for _ in range(4)] == [0, 0, 0, 0.25]
    assert script.asked == [1, 1, 1, 1]


async def test_a_busy_key_leases_spare_tokens_and_spends_them_without_a_call() -> None:
    now = [0.0]
    rl, script = limiter(100, lease=3, clock=lambda: now[0])
    key = uuid.uuid4()
    assert [await rl.take(key) for _ in range(12)] == [0.0] * 12
    # An idle key asks for itself only; then as many spares as it was taken recently, up to the lease.
    assert script.asked == [1, 2, 4, 4, 4]
    assert script.tokens == 100 - 15  # three spares held here
    now[0] += 1.0  # unspent past lease_seconds: dropped, and the next take calls again
    assert await rl.take(key) == 0
    assert len(script.asked) == 6


async def test_a_busy_key_calls_ahead_so_its_takes_never_wait_for_redis() -> None:
    rl, script = limiter(10**6, lease=16)
    key = uuid.uuid4()
    held = None
    for _ in range(64):  # a busy key, the loop running between takes as in the gateway
        assert await rl.take(key) == 0
        await asyncio.sleep(0)
        held = rl._leases[f"ces:rate-limit:{key}"]
        assert held.tokens <= 16  # never more spares than the lease (the bound)
    assert held is not None and held.tokens > 2 and not held.calling
    calls = len(script.asked)
    script.gate = asyncio.Event()  # Redis answers slowly from now on
    before_call = after_call = 0
    while True:
        take = asyncio.create_task(rl.take(key))
        await asyncio.sleep(0)
        if not take.done():
            break
        assert take.result() == 0
        if len(script.asked) == calls:
            before_call += 1
        else:
            after_call += 1
    # One call went out ahead, while spares were left (the last grant's eighth, at least one): the takes went on
    # spending them without waiting for it, and only the take that found none left waits.
    assert len(script.asked) == calls + 1 and before_call >= 1 and after_call >= 1
    assert script.asked[-1] + after_call <= 16  # it tops the spares up to the lease, no more
    script.gate.set()
    assert await take == 0
    assert held.tokens <= 16


async def test_an_idle_key_leases_nothing() -> None:
    now = [0.0]
    rl, script = limiter(100, lease=5, clock=lambda: now[0])
    key = uuid.uuid4()
    for _ in range(3):
        assert await rl.take(key) == 0
        now[0] += 5  # one take every five seconds: no demand to lease for
    assert script.asked == [1, 1, 1] and script.tokens == 97


async def test_an_empty_bucket_refuses_the_takes_beyond_it_in_arrival_order() -> None:
    rl, script = limiter(5, lease=4)
    script.gate = asyncio.Event()
    key = uuid.uuid4()
    first = asyncio.create_task(rl.take(key))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(rl.take(key)) for _ in range(7)]
    await asyncio.sleep(0)
    script.gate.set()
    waits = [await first, *await asyncio.gather(*rest)]
    assert waits == [0.0] * 5 + [0.25] * 3
    assert script.asked == [1, 7 + 1]  # the queued seven, plus one spare (demand) that the bucket no longer had


async def test_a_failed_call_fails_every_take_waiting_for_it_and_the_next_take_tries_again() -> None:
    rl, script = limiter(10, lease=2)
    script.gate = asyncio.Event()
    script.fail = ConnectionError("redis went away")
    key = uuid.uuid4()
    takes = [asyncio.create_task(rl.take(key)) for _ in range(3)]
    await asyncio.sleep(0)
    script.gate.set()
    for take in takes:
        with pytest.raises(CacheUnavailable):
            await take
    script.fail = None
    assert await rl.take(key) == 0  # not stuck: the key is idle again


async def test_a_take_cancelled_while_waiting_leaves_its_token_to_the_next() -> None:
    rl, script = limiter(1, lease=0)
    script.gate = asyncio.Event()
    key = uuid.uuid4()
    take = asyncio.create_task(rl.take(key))
    await asyncio.sleep(0)
    take.cancel()
    script.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await take
    await asyncio.sleep(0)
    assert await rl.take(key) == 0  # the cancelled take's token, kept here
    assert script.asked == [1]


async def test_a_batch_is_charged_in_redis_all_or_nothing_and_never_from_the_lease() -> None:
    rl, script = limiter(10, lease=3)
    key = uuid.uuid4()
    assert await rl.take(key, 4) == 0
    assert await rl.take(key, 7) > 0
    assert script.tokens == 6 and script.asked == [1, 1]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="lease >= 0"):
        limiter(1, lease=-1)
