"""Rebuilding the Redis rate cache from PostgreSQL: the newest row of every stored pair."""

from __future__ import annotations

import asyncio

from ces.services.ports import RateCache, StoredRates


async def rebuild_from_database(repository: StoredRates, cache: RateCache) -> int:
    """Offer every pair's newest non-revoked row to the cache (never regressing a newer cached value).

    Revocations are applied first: a cached rate that was revoked while Redis was unreachable is replaced
    by its fallback, and the revoked ids are recorded so that the offers below cannot bring one back.
    """
    for withdrawal in await asyncio.to_thread(repository.withdrawals):
        await cache.revoke(withdrawal.revoked, withdrawal.replacement)
    rates = await asyncio.to_thread(repository.latest_per_pair)
    await cache.put_many(rates)
    return len(rates)
