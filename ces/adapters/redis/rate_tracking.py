"""Redis server-assisted client-side caching of the rate keys: the worker learns of a rate change by a push.

Without it the worker asks Redis on every batch whether the legs it holds decoded are still the pairs' rates
(`RateCache.get_many`, one script call): at c=8 over HTTP that round trip was ~0.7 ms of a ~10 ms round trip
and ~18% of the worker's CPU per request (docs/http.md, "Rates held in the worker"). With tracking, Redis
itself tells the worker when a rate key changes, so a leg confirmed once is reused until Redis says otherwise.

One dedicated connection in RESP3 runs `CLIENT TRACKING ON BCAST PREFIX <key prefix>A ... PREFIX <key prefix>Z`:
every write to a rate key (`<key prefix>BASE:TARGET`, codes upper-case: a newer rate, a revocation, a delete,
an eviction) sends this connection an `invalidate` push naming the keys, and a flush one naming none
(everything). Only the rate keys: the gateways' token buckets (`<key prefix>ces:rate-limit:...`, written on
every lease call) and CES's other keys would otherwise push an invalidation to every worker, and void the
reads in flight, for nothing. The connection is pinged when quiet, and is only *trusted* while something
arrived on it within `2 x heartbeat`; a connection lost, refused or silent makes every reader ask Redis
again, as without tracking (so an outage is `CacheUnavailable`, never a stale rate).

What a reader may trust: a rate it read while the connection was trusted, if no invalidation arrived while
its read was in flight (`mark` before, `unchanged_since` after) and none for its key since (`forgets` is
called with the invalidated keys). The window left: a write is seen once its push is read by this process's
loop (well under a millisecond on one host), and, if the network between the worker and Redis silently
drops packets, up to `2 x heartbeat` (1 s by default) after the last thing that came through.

A Redis user that may not run `CLIENT TRACKING` (an ACL without `+client|tracking`) leaves tracking off
with one warning: the worker then asks Redis on every batch, as before.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ces.metrics import RATE_TRACKING_INVALIDATIONS, rate_tracking_up

log = logging.getLogger(__name__)

TRACKING_CLIENT_NAME = "ces-rate-tracking"  # in CLIENT LIST, for operators
_INVALIDATED = object()  # what the push handler returns, so the reader loop tells a push from a timeout


def tracked_prefixes(key_prefix: str) -> list[str]:
    """The prefixes that cover every rate key (`RateCache.key`: an upper-case ISO code first) and no other."""
    return [f"{key_prefix}{letter}" for letter in string.ascii_uppercase]


class RateTracking:
    """The tracking connection's state, read by `RateCache` and kept by `run` (a task of the worker)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str,
        heartbeat: float = 0.5,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.heartbeat = heartbeat
        self.retry_seconds = retry_seconds
        self._clock = clock
        # Bumped whenever trust is lost or regained (connect, disconnect, a flush): what a reader confirmed
        # under an earlier generation is not trusted any more.
        self.generation = 0
        self.invalidations = 0  # invalidate pushes read, for readers' `mark`
        self._trusted_until = 0.0  # loop time; 0 while not connected
        self._listeners: list[Callable[[Iterable[str] | None], None]] = []
        self.refused: str | None = None  # why tracking is off for good (the ACL), once known
        self._up = rate_tracking_up()

    def listen(self, forget: Callable[[Iterable[str] | None], None]) -> None:
        """`forget(keys)` is called with each invalidation's keys (None: every key)."""
        self._listeners.append(forget)

    def trusted(self) -> bool:
        return self._now() < self._trusted_until

    def mark(self) -> tuple[int, int]:
        """Taken before a read; `unchanged_since(mark)` after it says whether its answer may be trusted."""
        return self.generation, self.invalidations

    def unchanged_since(self, mark: tuple[int, int]) -> bool:
        return self.trusted() and (self.generation, self.invalidations) == mark

    async def run(self) -> None:
        """Keep a tracking connection until cancelled: reconnect after `retry_seconds` when it is lost."""
        warned = False
        while self.refused is None:
            try:
                await self._track()
            except asyncio.CancelledError:
                self._lose()
                raise
            except ResponseError as exc:  # NOPERM (the ACL), or a Redis without RESP3 / tracking
                self._lose()
                self.refused = str(exc)
                log.warning(
                    "Redis refused rate tracking (%s): rates are confirmed with Redis on every batch instead "
                    "(grant the worker's Redis user +client|tracking, docs/http.md)",
                    exc,
                )
                return
            except (RedisError, OSError, ConnectionError) as exc:
                self._lose()
                if not warned:
                    log.warning("rate tracking connection lost (%s): asking Redis on every batch until it is back", exc)
                    warned = True
                await asyncio.sleep(self.retry_seconds)
                continue
            warned = False

    async def _track(self) -> None:
        pool: Any = self.client.connection_pool
        conn: Any = pool.connection_class(
            **{**pool.connection_kwargs, "protocol": 3, "client_name": TRACKING_CLIENT_NAME}
        )
        try:
            await conn.connect()
            # The parser's hook for `invalidate` pushes; without one, redis-py drops their content.
            conn._parser.set_invalidation_push_handler(self._on_invalidate)
            args = ["CLIENT", "TRACKING", "ON", "BCAST"]
            for prefix in tracked_prefixes(self.key_prefix):
                args += ["PREFIX", prefix]
            await conn.send_command(*args)
            reply = await conn.read_response()
            if reply not in (b"OK", "OK"):
                raise ResponseError(f"CLIENT TRACKING answered {reply!r}")
            self._trust()
            log.info(
                "rate tracking on (keys %s[A-Z]*): rates held by the worker are dropped as Redis changes them",
                self.key_prefix,
            )
            awaiting_pong = False
            while True:
                reply = await conn.read_response(timeout=self.heartbeat, push_request=True)
                if reply is None:  # quiet for a heartbeat
                    if awaiting_pong:
                        raise TimeoutError(f"no answer from Redis within {2 * self.heartbeat:g}s")
                    await conn.send_command("PING")
                    awaiting_pong = True
                    continue
                awaiting_pong = False
                self._trusted_until = self._now() + 2 * self.heartbeat
        finally:
            await conn.disconnect(nowait=True)

    async def _on_invalidate(self, push: list[Any]) -> object:
        keys = push[1] if len(push) > 1 else None
        self.invalidations += 1
        RATE_TRACKING_INVALIDATIONS.inc()
        if keys is None:  # a flush: nothing held is known to be current
            self.generation += 1
            names: list[str] | None = None
        else:
            # Any bytes may name a key under the prefix; one that is not UTF-8 must not hide the others (redis-py
            # swallows a handler's exception, and with it the whole push). Ours are ASCII, so they still match.
            names = [k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in keys]
        for forget in self._listeners:
            forget(names)
        return _INVALIDATED

    def _trust(self) -> None:
        self.generation += 1
        self._trusted_until = self._now() + 2 * self.heartbeat
        self._up.set(1)

    def _lose(self) -> None:
        self.generation += 1
        self._trusted_until = 0.0
        self._up.set(0)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()
