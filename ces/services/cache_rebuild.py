"""Rebuilding the Redis rate cache from PostgreSQL: the newest row of every stored pair."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine, select

from ces.adapters.rate_cache import RateCache
from ces.projections.rates import rate_from_row
from ces.projections.tables import exchange_rate


def latest_rows(engine: Engine) -> list[object]:
    query = (
        select(exchange_rate)
        .distinct(exchange_rate.c.base_currency, exchange_rate.c.target_currency)
        .order_by(
            exchange_rate.c.base_currency,
            exchange_rate.c.target_currency,
            exchange_rate.c.published_at.desc(),
            exchange_rate.c.fetched_at.desc(),
        )
    )
    with engine.connect() as conn:
        return list(conn.execute(query).mappings())


async def rebuild_from_database(engine: Engine, cache: RateCache) -> int:
    """Offer every pair's newest row to the cache (never regressing a newer cached value)."""
    rows = await asyncio.to_thread(latest_rows, engine)
    await cache.put_many(rate_from_row(row) for row in rows)
    return len(rows)
