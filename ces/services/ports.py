"""The ports the use cases own: what they need from the outside world, as Protocols and plain values.

Adapters (`ces.adapters`) implement them; `ces.bootstrap` plugs real ones in, tests plug fakes
(`tests/fakes.py`) and run the same contract assertions against both (`tests/contracts/`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

from ces.domain.rates import Rate, Withdrawal
from ces.events.base import Event
from ces.events.conversions import Decision

# The Kafka header a publisher sets on an event it publishes again (a stored decision answering a repeated
# request id): readers that care (the gateway's reply router) learn it without a database read.
REPUBLISHED_HEADER = "ces-republished"


class EventPublisher(Protocol):
    async def publish(self, events: Sequence[Event], *, republished: bool = False) -> None:
        """Return once the broker acknowledged every event (each to its own topic, by its key).

        `republished`: these events were published before (marked with `REPUBLISHED_HEADER`)."""


class Received(NamedTuple):
    """One consumed message, with what is needed to dead-letter it.

    Immutable, and a NamedTuple rather than a frozen dataclass: the batch consumer builds one per record, and
    a frozen dataclass's `__init__` (one `object.__setattr__` per field) costs several times as much
    (docs/rates.md)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()  # the record's Kafka headers (a request's signature)


class DeadLetterSink(Protocol):
    async def publish(self, message: Received, reason: str, detail: str) -> None:
        """Set the message aside, byte for byte, with a stable reason code and a detail; return once stored."""


class CacheUnavailable(Exception):
    """The derived cache did not answer (a transient failure: PostgreSQL stays authoritative)."""


class RateCache(Protocol):
    """The latest rate per pair, derived from PostgreSQL: a miss or `CacheUnavailable` means "read PostgreSQL"."""

    async def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[Rate | None]: ...

    async def put_many(self, rates: Iterable[Rate]) -> int:
        """Offer rates; a key only ever moves to a newer publication, never to a revoked rate."""

    async def put_newest(self, chains: Iterable[Sequence[Rate]]) -> int:
        """`put_many` of the rates, given as one sequence per pair, newest first: only as many of a pair's
        rates are read as it takes to find the newest that is not revoked."""

    async def revoke(self, revoked: Rate, fallback: Rate | None) -> bool:
        """Withdraw `revoked` from its pair (cache `fallback` in its place if it was the cached one)."""


class StoredRates(Protocol):
    """The rate rows of record (PostgreSQL), read side; revoked rows are never returned as current."""

    def latest(self, base: str, target: str) -> Rate | None: ...

    def latest_at_many(self, keys: Sequence[tuple[str, str, datetime]]) -> list[Rate | None]:
        """For each (base, target, at): the newest non-revoked row published at or before `at`, or None.
        One round trip for all of them."""

    def latest_per_pair(self, base: str | None = None) -> list[Rate]: ...

    def withdrawals(self) -> list[Withdrawal]: ...


class DecisionStore(Protocol):
    """The decisions of record (the audit and its rejections): one per request id, the first one stands."""

    def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Write what is new in one transaction; return, in input order, the decision that stands for each:
        the very object given when this call recorded it, a rebuilt one when it was decided before."""

    def get(self, request_ids: Sequence[UUID]) -> dict[UUID, Decision]: ...


class DecisionRecorder(Protocol):
    """`DecisionStore.record` awaited on the event loop (the worker's hot path: no thread per batch)."""

    async def record(self, decisions: Sequence[Decision]) -> list[Decision]: ...


class TooManyPending(Exception):
    pass


Reply = tuple[Event, bool]  # the decision, and whether it was re-published (decided before: a replay)


class Replies(Protocol):
    """Where a synchronous caller waits for the decision of the request it published."""

    def expect(self, request_id: UUID) -> asyncio.Future[Reply]:
        """Register interest before publishing; raises `TooManyPending` when too many callers wait."""

    def expect_many(self, request_ids: Sequence[UUID]) -> list[asyncio.Future[Reply]]:
        """`expect` for each id, all or none (`TooManyPending` if they do not all fit)."""

    @property
    def room(self) -> int:
        """How many more waiters fit now."""

    async def wait_for_room(self) -> None:
        """Return once some waiter was resolved or forgotten."""

    def forget(self, request_id: UUID, fut: asyncio.Future[Reply]) -> None: ...
