"""The fetch lease in PostgreSQL: at most one provider fetch per interval across every worker."""

from __future__ import annotations

import asyncio
from uuid import UUID

from sqlalchemy import Engine, text

_CLAIM = text(
    """
    INSERT INTO fetch_lease (provider, holder, claimed_at, expires_at)
    VALUES (:provider, :holder, now(), now() + make_interval(secs => :seconds))
    ON CONFLICT (provider) DO UPDATE
        SET holder = EXCLUDED.holder, claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at
        WHERE fetch_lease.expires_at <= now()
    RETURNING holder
    """
)
_EXPIRE_IN = text(
    """
    UPDATE fetch_lease SET expires_at = now() + make_interval(secs => :seconds)
    WHERE provider = :provider AND holder = :holder
    """
)


class PostgresFetchLease:
    """`claim` is one atomic statement on the database's clock: two workers ticking at once (a double
    tick around a rebalance, two leaders for a moment) cannot both win, and workers whose clocks
    disagree still agree on when a lease has run out. Blocking calls run in a thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def claim(self, provider: str, holder: UUID, seconds: float) -> bool:
        return await asyncio.to_thread(self._claim, provider, holder, seconds)

    async def expire_in(self, provider: str, holder: UUID, seconds: float) -> None:
        """Shorten (or lengthen) our own lease: after a failed fetch, the next try comes sooner."""
        await asyncio.to_thread(self._expire_in, provider, holder, seconds)

    def _claim(self, provider: str, holder: UUID, seconds: float) -> bool:
        with self.engine.begin() as conn:
            row = conn.execute(_CLAIM, {"provider": provider, "holder": holder, "seconds": seconds}).first()
        return row is not None

    def _expire_in(self, provider: str, holder: UUID, seconds: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(_EXPIRE_IN, {"provider": provider, "holder": holder, "seconds": seconds})
