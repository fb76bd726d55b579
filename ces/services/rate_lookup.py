"""The rate for any pair, with provenance: the latest from the Redis cache (PostgreSQL on a miss), or the
one in force at a past instant (PostgreSQL).

Only pairs against the provider's base (`pivot`, EUR for the ECB) are stored; the others are derived at
lookup: inverse X->EUR from
EUR->X, cross X->Y from EUR->X and EUR->Y (see `ces.domain.rates`). Every answer names the rows it used.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from ces.domain.rates import DerivedRate, Rate, derive, legs_needed
from ces.metrics import CACHE_ERRORS, CACHE_MISSES
from ces.services.ports import CacheUnavailable, RateCache, StoredRates

log = logging.getLogger(__name__)

_MAX_DERIVED = 4096  # pairs remembered (every pair of ~170 currencies is ~29,000; the hot ones are few)


class RateLookup:
    def __init__(self, cache: RateCache | None, repository: StoredRates, pivot: str) -> None:
        self.cache = cache
        self.repository = repository
        self.pivot = pivot
        # The last rate derived per pair, with the legs it came from: a cache that hands back the same leg
        # objects while they are current (the Redis cache does) spares the derivation and its Decimal math.
        self._derived: dict[tuple[str, str], DerivedRate] = {}

    async def latest(self, base: str, target: str) -> DerivedRate | None:
        if base == target:
            return None
        legs = await self._rates(legs_needed(base, target, self.pivot))
        present = [leg for leg in legs if leg is not None]
        if len(present) != len(legs):
            return None
        return derive(base, target, self.pivot, present)

    async def latest_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], DerivedRate | None]:
        """Rates for many pairs with one cache round trip for all their legs."""
        needed = sorted({leg for base, target in pairs for leg in legs_needed(base, target, self.pivot)})
        legs = dict(zip(needed, await self._rates(needed), strict=True))
        result: dict[tuple[str, str], DerivedRate | None] = {}
        for base, target in pairs:
            wanted = [legs[leg] for leg in legs_needed(base, target, self.pivot)]
            present = [leg for leg in wanted if leg is not None]
            if base == target or len(present) != len(wanted):
                result[(base, target)] = None
                continue
            before = self._derived.get((base, target))
            if before is not None and all(a is b for a, b in zip(before.legs, present, strict=True)):
                result[(base, target)] = before
                continue
            rate = result[(base, target)] = derive(base, target, self.pivot, present)
            if len(self._derived) >= _MAX_DERIVED:
                self._derived.clear()
            self._derived[(base, target)] = rate
        return result

    async def at_many(
        self, keys: list[tuple[str, str, datetime]]
    ) -> dict[tuple[str, str, datetime], DerivedRate | None]:
        """Rates for many (base, target, at): each leg the newest row published at or before `at`.

        Straight from PostgreSQL, one query for every leg of every key: the cache holds only the latest
        rate of each pair."""
        needed = sorted({(*leg, at) for base, target, at in keys for leg in legs_needed(base, target, self.pivot)})
        found = await asyncio.to_thread(self.repository.latest_at_many, needed) if needed else []
        legs = dict(zip(needed, found, strict=True))
        result: dict[tuple[str, str, datetime], DerivedRate | None] = {}
        for base, target, at in keys:
            wanted = [legs[(*leg, at)] for leg in legs_needed(base, target, self.pivot)]
            present = [leg for leg in wanted if leg is not None]
            ok = base != target and len(present) == len(wanted)
            result[(base, target, at)] = derive(base, target, self.pivot, present) if ok else None
        return result

    async def _rates(self, pairs: list[tuple[str, str]]) -> list[Rate | None]:
        found: list[Rate | None] = [None] * len(pairs)
        if not pairs:
            return found
        if self.cache is not None:
            try:
                found = await self.cache.get_many(pairs)
            except CacheUnavailable as exc:
                CACHE_ERRORS.labels("get").inc()
                log.warning("rate cache unavailable (%s); reading PostgreSQL", exc)
        for i, (base, target) in enumerate(pairs):
            if found[i] is None:
                if self.cache is not None:
                    CACHE_MISSES.inc()
                    log.warning("cache miss for %s:%s; reading PostgreSQL", base, target)
                found[i] = await asyncio.to_thread(self.repository.latest, base, target)
        return found
