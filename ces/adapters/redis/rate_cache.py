"""The Redis cache of the latest rate per pair (key `BASE:TARGET`), which never moves backwards.

Each key is a hash: rate_id, rate_value (decimal string), provider_name, published_at, fetched_at and
`order` (published_at in epoch microseconds, then fetched_at as a tie-breaker). A Lua script writes only
when the incoming `order` is newer than the stored one, atomically, so replays, redeliveries and
reordering across partitions never regress a pair. Redis is derived state: `rebuild` refills it from
PostgreSQL.

Revocations: `revoke` moves a pair whose cached rate_id is the revoked one to the fallback row (or
deletes the key when there is none), atomically, and only in that case: the one move backwards. It also
adds the id to the set `<prefix>ces:revoked-rates`, which the write script consults, so no late writer
(a redelivered RateFetched, a rebuild that read PostgreSQL just before the revocation) can put a revoked
rate back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ces.domain.rates import Rate
from ces.projections.rate_rows import CurrentRates
from ces.services.ports import CacheUnavailable

# KEYS: pair key, revoked set. ARGV: one pair's rates newest first, six fields each. The first that is not
# revoked is written if it is newer than the cached rate; the older ones are not newer either. Returns 1
# (written), 0 (not newer than the cached rate) or -1 (every one revoked: never cached).
_SET_NEWEST = """
for i = 1, #ARGV, 6 do
  if redis.call('SISMEMBER', KEYS[2], ARGV[i + 1]) == 0 then
    local current = redis.call('HGET', KEYS[1], 'order')
    if current and current >= ARGV[i] then
      return 0
    end
    redis.call('HSET', KEYS[1], 'order', ARGV[i], 'rate_id', ARGV[i + 1], 'rate_value', ARGV[i + 2],
               'provider_name', ARGV[i + 3], 'published_at', ARGV[i + 4], 'fetched_at', ARGV[i + 5])
    return 1
  end
end
return -1
"""
# How many of a pair's rates one script call is given after its first, which is given only the newest: the
# projection leaves out every rate revoked when its rows commit, so the newest is revoked only when a
# revocation landed in between (a batch of history, 2,000 rates of ~30 pairs, sends ~30 rates, not ~240).
# A pair whose newest was revoked gets enough for any plausible run of revoked rates; a longer run takes
# another round.
_WALK = 8

# KEYS: pair key, revoked set. ARGV: revoked rate_id, then either nothing (delete) or the fallback's fields.
_REVOKE = """
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'rate_id') ~= ARGV[1] then
  return 0
end
if #ARGV == 1 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'order', ARGV[2], 'rate_id', ARGV[3], 'rate_value', ARGV[4],
             'provider_name', ARGV[5], 'published_at', ARGV[6], 'fetched_at', ARGV[7])
end
return 1
"""


def _micros(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


def order_key(rate: Rate) -> str:
    # Fixed-width digits so that Lua's string comparison is the chronological order.
    return f"{_micros(rate.published_at):020d}.{_micros(rate.fetched_at):020d}"


def _unavailable(exc: BaseException) -> CacheUnavailable:
    error = CacheUnavailable(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


class RateCache:
    """The `RateCache` port on Redis: Redis errors surface as `CacheUnavailable`."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str = "") -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._script = client.register_script(_SET_NEWEST)
        self._revoke = client.register_script(_REVOKE)

    def key(self, base: str, target: str) -> str:
        return f"{self.key_prefix}{base}:{target}"

    @property
    def revoked_key(self) -> str:
        return f"{self.key_prefix}ces:revoked-rates"

    async def revoke(self, revoked: Rate, fallback: Rate | None) -> bool:
        """Withdraw `revoked` from its pair: if (and only if) it is the cached rate, cache `fallback` in its
        place (or nothing). Returns whether the pair's key changed. `fallback` must be PostgreSQL's newest
        non-revoked row of the pair."""
        args = [str(revoked.rate_id)]
        if fallback is not None:
            args += _fields(fallback)
        try:
            changed = await self._revoke(
                keys=[self.key(revoked.base_currency, revoked.target_currency), self.revoked_key], args=args
            )
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return bool(changed)

    async def put_many(self, rates: Iterable[Rate]) -> int:
        """Offer rates; returns how many pairs moved forward. The same end state as offering each in turn:
        only a pair's newest rate is offered (the order, then the first of equals in `rates`); should it be
        revoked, the next newest is, and so on."""
        return await self.put_newest(CurrentRates(rates).newest_first())

    async def put_newest(self, chains: Iterable[Sequence[Rate]]) -> int:
        """Offer each pair's rates, newest first (one sequence per pair); returns how many pairs moved
        forward. One script call per pair, in one round trip: the newest rate not revoked is written if it
        is newer than the cached one. Only a pair's newest rate is read and sent; a pair whose newest is
        revoked is offered its next `_WALK` in another round, and so on."""
        try:
            return await self._put_newest(chains)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def _put_newest(self, chains: Iterable[Sequence[Rate]]) -> int:
        pending = [(chain, 0) for chain in chains if len(chain)]
        moved = 0
        size = 1
        while pending:
            async with self.client.pipeline(transaction=False) as pipe:
                for chain, start in pending:
                    offered = chain[start : start + size]
                    await self._script(
                        keys=[self.key(offered[0].base_currency, offered[0].target_currency), self.revoked_key],
                        args=[field for rate in offered for field in _fields(rate)],
                        client=pipe,
                    )
                results = await pipe.execute()
            moved += sum(1 for r in results if int(r) == 1)
            pending = [
                (chain, start + size)
                for (chain, start), r in zip(pending, results, strict=True)
                if int(r) == -1 and start + size < len(chain)
            ]
            size = _WALK
        return moved

    async def get(self, base: str, target: str) -> Rate | None:
        found = await self.get_many([(base, target)])
        return found[0]

    async def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[Rate | None]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for base, target in pairs:
                    pipe.hgetall(self.key(base, target))
                results = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return [_decode(base, target, h) for (base, target), h in zip(pairs, results, strict=True)]


def _fields(rate: Rate) -> list[str]:
    return [
        order_key(rate),
        str(rate.rate_id),
        format(rate.rate_value, "f"),
        rate.provider_name,
        rate.published_at.isoformat(),
        rate.fetched_at.isoformat(),
    ]


def _decode(base: str, target: str, fields: dict[bytes, bytes]) -> Rate | None:
    if not fields:
        return None
    f = {k.decode(): v.decode() for k, v in fields.items()}
    return Rate(
        rate_id=UUID(f["rate_id"]),
        base_currency=base,
        target_currency=target,
        rate_value=Decimal(f["rate_value"]),
        provider_name=f["provider_name"],
        published_at=datetime.fromisoformat(f["published_at"]).astimezone(UTC),
        fetched_at=datetime.fromisoformat(f["fetched_at"]).astimezone(UTC),
    )
