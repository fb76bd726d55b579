"""Rebuilding the Redis rate cache from PostgreSQL: the newest row of every stored pair."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from ces.adapters.rate_cache import RateCache
from ces.projections.rates import RateRepository


async def rebuild_from_database(engine: Engine, cache: RateCache) -> int:
    """Offer every pair's newest row to the cache (never regressing a newer cached value)."""
    rates = await asyncio.to_thread(RateRepository(engine).latest_per_pair)
    await cache.put_many(rates)
    return len(rates)
