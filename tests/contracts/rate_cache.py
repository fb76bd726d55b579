"""The rate cache's contract: the assertions every implementation (in-memory fake, Redis) must pass.

Subclass `RateCacheContract` as `Test...` with two fixtures: `cache` (an empty cache) and `dead_cache` (one
whose backend does not answer). The fake half runs in tests/unit, the Redis half in tests/integration.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ces.domain.rates import Rate
from ces.services.ports import CacheUnavailable, RateCache
from tests.fakes import stored_rate

T0 = datetime(2024, 3, 15, 16, 0, 0, 123456, tzinfo=UTC)


class RateCacheContract:
    async def test_an_empty_cache_answers_none_per_pair(self, cache: RateCache) -> None:
        assert await cache.get_many([("EUR", "USD"), ("EUR", "JPY")]) == [None, None]

    async def test_a_put_rate_comes_back_whole(self, cache: RateCache) -> None:
        usd = stored_rate("USD", "1.08920", T0)
        assert await cache.put_many([usd]) == 1
        assert await cache.get_many([("EUR", "USD")]) == [usd]  # digits, ids and microseconds kept

    async def test_a_pair_only_moves_forward(self, cache: RateCache) -> None:
        old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(days=1))
        assert await cache.put_many([new]) == 1
        assert await cache.put_many([old]) == 0  # a late redelivery does not regress the pair
        assert await cache.get_many([("EUR", "USD")]) == [new]

    async def test_revoking_the_cached_rate_falls_back(self, cache: RateCache) -> None:
        old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(days=1))
        await cache.put_many([new])
        assert await cache.revoke(new, old) is True
        assert await cache.get_many([("EUR", "USD")]) == [old]

    async def test_a_revoked_rate_never_comes_back(self, cache: RateCache) -> None:
        old, new = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0 + timedelta(days=1))
        await cache.put_many([old])
        assert await cache.revoke(new, old) is False  # not the cached one: nothing moves...
        assert await cache.put_many([new]) == 0  # ...but it is remembered, so a redelivery cannot cache it
        assert await cache.get_many([("EUR", "USD")]) == [old]

    async def test_a_batch_leaves_each_pair_at_its_newest_rate_whatever_the_order(self, cache: RateCache) -> None:
        day = timedelta(days=1)
        usd = [stored_rate("USD", f"1.0{i}", T0 + i * day) for i in range(4)]
        jpy = [stored_rate("JPY", f"16{i}", T0 + i * day) for i in range(3)]
        assert await cache.put_many([usd[2], jpy[0], usd[3], jpy[2], usd[0], jpy[1], usd[1]]) == 2  # pairs moved
        assert await cache.get_many([("EUR", "USD"), ("EUR", "JPY")]) == [usd[3], jpy[2]]
        assert await cache.put_many([usd[1], usd[2]]) == 0  # all older than the cached rate

    async def test_a_batch_whose_newest_rates_are_revoked_caches_the_newest_other(self, cache: RateCache) -> None:
        day = timedelta(days=1)
        usd = [stored_rate("USD", f"1.0{i}", T0 + i * day) for i in range(4)]
        await cache.put_many([usd[0]])
        await cache.revoke(usd[3], usd[0])  # not cached: only remembered
        await cache.revoke(usd[2], usd[0])
        assert await cache.put_many([usd[3], usd[1], usd[2]]) == 1
        assert await cache.get_many([("EUR", "USD")]) == [usd[1]]

    async def test_a_long_run_of_revoked_newest_rates_still_caches_the_newest_other(self, cache: RateCache) -> None:
        # Longer than what the Redis cache sends in its first two rounds (1, then 8): the rest goes in a third.
        usd = [stored_rate("USD", f"1.{i:02d}", T0 + timedelta(days=i)) for i in range(20)]
        for rate in usd[3:]:
            await cache.revoke(rate, None)
        assert await cache.put_many(reversed(usd)) == 1
        assert await cache.get_many([("EUR", "USD")]) == [usd[2]]

    async def test_put_newest_reads_a_pair_only_as_far_as_its_newest_unrevoked_rate(self, cache: RateCache) -> None:
        day = timedelta(days=1)
        usd = [stored_rate("USD", f"1.0{i}", T0 + i * day) for i in range(4)]
        jpy = [stored_rate("JPY", f"16{i}", T0 + i * day) for i in range(3)]
        await cache.revoke(usd[3], None)
        read: list[int] = []

        class Chain(Sequence[Rate]):
            """USD newest first, recording which are read."""

            def __len__(self) -> int:
                return 4

            def __getitem__(self, index: Any) -> Any:
                picked = list(range(3, -1, -1))[index]
                read.extend(picked if isinstance(picked, list) else [picked])
                return [usd[i] for i in picked] if isinstance(picked, list) else usd[picked]

        assert await cache.put_newest([Chain(), jpy[::-1]]) == 2
        assert await cache.get_many([("EUR", "USD"), ("EUR", "JPY")]) == [usd[2], jpy[2]]
        assert set(read) <= {3, 2, 1, 0} and 3 in read and 2 in read
        assert await cache.put_newest([usd[1::-1]]) == 0  # older than the cached rate

    async def test_of_two_rates_of_a_pair_in_the_same_order_the_first_offered_stands(self, cache: RateCache) -> None:
        first, second = stored_rate("USD", "1.08", T0), stored_rate("USD", "1.09", T0)
        assert await cache.put_many([first, second]) == 1
        assert await cache.get_many([("EUR", "USD")]) == [first]

    async def test_revoking_the_last_rate_of_a_pair_empties_it(self, cache: RateCache) -> None:
        usd = stored_rate("USD", "1.08", T0)
        await cache.put_many([usd])
        assert await cache.revoke(usd, None) is True
        assert await cache.get_many([("EUR", "USD")]) == [None]

    async def test_a_dead_backend_raises_cache_unavailable(self, dead_cache: RateCache) -> None:
        usd = stored_rate("USD", "1.08", T0)
        with pytest.raises(CacheUnavailable):
            await dead_cache.get_many([("EUR", "USD")])
        with pytest.raises(CacheUnavailable):
            await dead_cache.put_many([usd])
        with pytest.raises(CacheUnavailable):
            await dead_cache.revoke(usd, None)
