"""Any pair from EUR-based rows, from Redis or PostgreSQL, naming the rows used; and the cache rebuild."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine

from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.rate_store import RateRepository
from ces.adapters.redis.rate_cache import RateCache
from ces.domain.rates import RateKind
from ces.events.rates import RateRevoked
from ces.services.cache_rebuild import rebuild_from_database
from ces.services.rate_lookup import RateLookup
from tests.integration.test_rate_projection import T0, rate_event


@pytest.fixture
def seeded(pg_schema: tuple[Engine, str]) -> tuple[Engine, dict[str, object]]:
    engine, _ = pg_schema
    events = {
        "USD": rate_event("USD", "1.0892", T0),
        "NGN": rate_event("NGN", "1745.1234", T0),
        "USD-old": rate_event("USD", "1.0500", T0 - timedelta(days=1)),
    }
    RateProjector(engine).project(list(events.values()))
    return engine, events  # type: ignore[return-value]


async def test_pairs_from_the_database_when_the_cache_is_empty(
    seeded: tuple[Engine, dict[str, object]], redis_client: aioredis.Redis, unique: str
) -> None:
    engine, events = seeded
    lookup = RateLookup(RateCache(redis_client, key_prefix=f"empty-{unique}:"), RateRepository(engine), "EUR")
    direct = await lookup.latest("EUR", "USD")
    inverse = await lookup.latest("NGN", "EUR")
    cross = await lookup.latest("USD", "NGN")
    assert direct is not None and direct.kind is RateKind.DIRECT
    assert direct.rate_ids == (events["USD"].rate_id,)  # type: ignore[attr-defined]  # newest, not the older
    assert inverse is not None and inverse.rate_ids == (events["NGN"].rate_id,)  # type: ignore[attr-defined]
    assert cross is not None and cross.kind is RateKind.CROSS
    assert cross.rate_ids == (events["USD"].rate_id, events["NGN"].rate_id)  # type: ignore[attr-defined]
    assert cross.rate_value == Decimal("1602.206573632024")
    assert await lookup.latest("USD", "XYZ") is None
    assert await lookup.latest("USD", "USD") is None


async def test_rebuilt_cache_answers_like_the_database_and_redis_down_falls_back(
    seeded: tuple[Engine, dict[str, object]], redis_client: aioredis.Redis, unique: str
) -> None:
    engine, events = seeded
    cache = RateCache(redis_client, key_prefix=f"rebuild-{unique}:")
    assert await rebuild_from_database(RateRepository(engine), cache) == 2  # two pairs; the older USD row is history
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == events["USD"].rate_id  # type: ignore[attr-defined]

    from_cache = await RateLookup(cache, RateRepository(engine), "EUR").latest("USD", "NGN")
    unreachable = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        lookup = RateLookup(RateCache(unreachable), RateRepository(engine), "EUR")
        from_database = await lookup.latest("USD", "NGN")
    finally:
        await unreachable.aclose()
    assert from_cache is not None and from_cache == from_database


async def test_rates_at_past_instants_in_one_query_skip_revoked_rows(
    seeded: tuple[Engine, dict[str, object]],
) -> None:
    engine, events = seeded
    usd, old, ngn = (events[k] for k in ("USD", "USD-old", "NGN"))
    repository = RateRepository(engine)
    lookup = RateLookup(None, repository, "EUR")
    before_t0, at_t0 = T0 - timedelta(seconds=1), T0
    found = await lookup.at_many(
        [("EUR", "USD", before_t0), ("EUR", "USD", at_t0), ("USD", "NGN", before_t0), ("USD", "NGN", at_t0)]
    )
    assert found[("EUR", "USD", before_t0)].rate_ids == (old.rate_id,)  # type: ignore[union-attr, attr-defined]
    assert found[("EUR", "USD", at_t0)].rate_ids == (usd.rate_id,)  # type: ignore[union-attr, attr-defined]
    assert found[("USD", "NGN", before_t0)] is None  # NGN's only row is later: no leg, no rate
    assert found[("USD", "NGN", at_t0)].rate_ids == (usd.rate_id, ngn.rate_id)  # type: ignore[union-attr, attr-defined]
    # A revoked row is never used, at any instant: the pair falls back to the row before it.
    revocation = RateRevoked.for_rate(
        rate_id=usd.rate_id,  # type: ignore[attr-defined]
        base_currency="EUR",
        target_currency="USD",
        reason="test",
        revoked_by="test",
        at=T0 + timedelta(hours=1),
    )
    RateProjector(engine).project([revocation])
    (again,) = repository.latest_at_many([("EUR", "USD", at_t0 + timedelta(days=1))])
    assert again is not None and again.rate_id == old.rate_id  # type: ignore[attr-defined]
    assert repository.latest_at_many([]) == []
