"""The fetch lease on the real PostgreSQL: one holder at a time, on the database's clock."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import Engine

from ces.adapters.postgres.fetch_lease import PostgresFetchLease


async def test_concurrent_claims_have_one_winner_until_the_lease_runs_out(pg_schema: tuple[Engine, str]) -> None:
    engine, _ = pg_schema
    lease = PostgresFetchLease(engine)
    holders = [uuid.uuid4() for _ in range(8)]
    won = await asyncio.gather(*(lease.claim("ecb", h, 3600) for h in holders))
    assert sum(won) == 1
    winner = holders[won.index(True)]
    assert await lease.claim("fixer", uuid.uuid4(), 3600)  # leases are per provider

    # A loser cannot move the winner's lease; the winner can (after a failed fetch).
    await lease.expire_in("ecb", holders[won.index(False)], 0)
    assert not await lease.claim("ecb", uuid.uuid4(), 3600)
    await lease.expire_in("ecb", winner, 0)
    assert await lease.claim("ecb", uuid.uuid4(), 3600)
