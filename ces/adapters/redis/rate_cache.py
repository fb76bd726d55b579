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

Reading (`get_many`): one script call for every pair asked, which answers a pair this process has already
decoded with a bare 1 while its `order` and `rate_id` are unchanged, so the decoded `Rate` is reused; any
other pair comes back whole. The worker asks for the same few legs on every batch, and a pipeline of
`HGETALL`s (a 12-field reply per leg, parsed in Python, then decoded: UUID, Decimal, two datetimes) was
~14% of its CPU at light load (docs/http.md, "The worker's CPU per conversion").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from ces.adapters.redis.rate_tracking import RateTracking
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


# KEYS: pair keys. ARGV: for each key, the `order` and `rate_id` this reader holds decoded ("" when none).
# Per key: 0 (no rate cached), 1 (unchanged: reuse the decoded rate), or the six fields in `_FIELDS` order.
# `order` and `rate_id` together: a revocation can fall back to a rate of the same instants, never of the
# same id, and a rate row (insert-only) never changes under its id.
_GET_CHANGED = """
local out = {}
for i = 1, #KEYS do
  local head = redis.call('HMGET', KEYS[i], 'order', 'rate_id')
  if not head[1] and not head[2] then
    out[i] = 0
  elseif head[1] == ARGV[2 * i - 1] and head[2] == ARGV[2 * i] then
    out[i] = 1
  else
    out[i] = redis.call('HMGET', KEYS[i], 'order', 'rate_id', 'rate_value', 'provider_name', 'published_at',
                        'fetched_at')
  end
end
return out
"""
# Decoded rates kept per key: a pair never has more than one current rate, so this is at most one entry per
# pair asked for; the bound only matters to a process asked about more pairs than any provider lists.
_MAX_DECODED = 4096
# Connections `get_many` holds at most (a worker has up to 8 batches in flight; more callers wait their turn).
_READERS = 4


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
    """The `RateCache` port on Redis: Redis errors surface as `CacheUnavailable`.

    With `tracking` (the worker's), a rate confirmed by Redis while tracking was trusted is reused without
    asking again until Redis invalidates its key (`ces.adapters.redis.rate_tracking`)."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str = "", tracking: RateTracking | None = None) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self._script = client.register_script(_SET_NEWEST)
        self._revoke = client.register_script(_REVOKE)
        self._get_changed = client.register_script(_GET_CHANGED)
        self._decoded: dict[str, tuple[bytes, bytes, Rate]] = {}  # key -> (order, rate_id, the rate)
        # Connections held for `get_many` (taken from the client's pool, so closing the client closes them).
        self._readers: list[Any] = []
        self._reader_slots = asyncio.Semaphore(_READERS)
        self._tracking = tracking
        # key -> the tracking generation it was confirmed under; dropped when Redis invalidates the key.
        self._confirmed: dict[str, int] = {}
        if tracking is not None:
            tracking.listen(self._forget)

    def _forget(self, keys: Iterable[str] | None) -> None:
        if keys is None:
            self._confirmed.clear()
        else:
            for key in keys:
                self._confirmed.pop(key, None)

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
        """The cached rate of each pair (None: not cached), in one round trip; a rate decoded before is
        reused only after Redis confirmed it is still the pair's (an outage is `CacheUnavailable`, never a
        stale answer). With trusted tracking, pairs all confirmed and not invalidated since take no round
        trip at all."""
        if not pairs:
            return []
        keys = [self.key(base, target) for base, target in pairs]
        # What this call tells Redis it holds is what it reuses on a 1 (another call may replace the entry
        # meanwhile).
        held = [self._decoded.get(key) for key in keys]
        tracking = self._tracking
        mark = (0, 0)
        if tracking is not None:
            if tracking.trusted():
                generation, confirmed = tracking.generation, self._confirmed
                rates: list[Rate | None] = [
                    e[2] for k, e in zip(keys, held, strict=True) if e is not None and confirmed.get(k) == generation
                ]
                if len(rates) == len(keys):
                    return rates
            mark = tracking.mark()
        known: list[bytes] = []
        for entry in held:
            known += (entry[0], entry[1]) if entry is not None else (b"", b"")
        async with self._reader_slots:
            replies = await self._call_get_changed(keys, known)
        found: list[Rate | None] = []
        for (base, target), key, entry, reply in zip(pairs, keys, held, replies, strict=True):
            if reply == 1 and entry is not None:
                rate = entry[2]
            elif not isinstance(reply, list):  # 0: nothing cached
                rate = None
                self._decoded.pop(key, None)
            else:
                rate = _decode_fields(base, target, reply)
                if rate is None or reply[0] is None:
                    self._decoded.pop(key, None)
                else:
                    if len(self._decoded) >= _MAX_DECODED:
                        self._decoded.clear()
                        self._confirmed.clear()
                    self._decoded[key] = (reply[0], reply[1], rate)
            found.append(rate)
        if tracking is not None:
            # Trusted from now on only if no invalidation arrived while the call was in flight.
            confirm = tracking.unchanged_since(mark)
            for key in keys:
                if key not in self._decoded:
                    self._confirmed.pop(key, None)
                elif confirm:
                    self._confirmed[key] = mark[0]
        return found

    async def _call_get_changed(self, keys: list[str], known: list[bytes]) -> list[Any]:
        """`_GET_CHANGED` on a held connection: the command written and its reply read directly, without the
        client's per-command machinery (pool checkout, retry wrapper, observability hooks), which cost about
        as much again as the command itself (~200 -> ~120 us of CPU a call). The connection keeps the
        client's socket timeouts; one that fails or is interrupted mid-command is disconnected and given
        back to the pool (a reply may be pending on it), and the error is `CacheUnavailable`."""
        conn = self._readers.pop() if self._readers else None
        held = conn is not None
        pool: Any = self.client.connection_pool
        try:
            if conn is None:
                conn = await pool.get_connection()
            try:
                return await _command(conn, "EVALSHA", self._get_changed.sha, len(keys), *keys, *known)
            except NoScriptError:  # a restarted or flushed Redis: load the script, once, and ask again
                self._get_changed.sha = await self.client.script_load(_GET_CHANGED)
                return await _command(conn, "EVALSHA", self._get_changed.sha, len(keys), *keys, *known)
            except RedisConnectionError:
                if not held:
                    raise
                # A held connection the server closed meanwhile (a Redis restart): one more try on a new one,
                # as the client's own retry would have done.
                await conn.disconnect(nowait=True)
                await pool.release(conn)
                conn = None
                conn = await pool.get_connection()
                return await _command(conn, "EVALSHA", self._get_changed.sha, len(keys), *keys, *known)
        except BaseException as exc:
            if conn is not None:
                await conn.disconnect(nowait=True)
                await pool.release(conn)
                conn = None
            if isinstance(exc, RedisError | OSError):
                raise _unavailable(exc) from exc
            raise
        finally:
            if conn is not None:
                self._readers.append(conn)


async def _command(conn: Any, *args: Any) -> list[Any]:
    await conn.send_packed_command(conn.pack_command(*args), check_health=False)
    reply: list[Any] = await conn.read_response()
    return reply


def _fields(rate: Rate) -> list[str]:
    return [
        order_key(rate),
        str(rate.rate_id),
        format(rate.rate_value, "f"),
        rate.provider_name,
        rate.published_at.isoformat(),
        rate.fetched_at.isoformat(),
    ]


def _decode_fields(base: str, target: str, fields: Sequence[bytes | None]) -> Rate | None:
    """A rate from its hash's fields in `_GET_CHANGED`'s order (order first, unused); None if one is missing."""
    _, rate_id, rate_value, provider, published_at, fetched_at = fields
    if rate_id is None or rate_value is None or provider is None or published_at is None or fetched_at is None:
        return None
    return Rate(
        rate_id=UUID(rate_id.decode()),
        base_currency=base,
        target_currency=target,
        rate_value=Decimal(rate_value.decode()),
        provider_name=provider.decode(),
        published_at=datetime.fromisoformat(published_at.decode()).astimezone(UTC),
        fetched_at=datetime.fromisoformat(fetched_at.decode()).astimezone(UTC),
    )
