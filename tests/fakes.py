"""In-memory fakes of CES's adapters (audit store, rate lookup, publisher, dead-letter sink) for unit tests.

Each fake keeps the contract of the adapter it stands for; the audit store's is checked against the real
PostgreSQL store by the same assertions (tests/contracts/audit_store.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from ces.adapters.kafka.dead_letters import Headers
from ces.domain.rates import DerivedRate, Rate, derive, legs_needed
from ces.events.base import Event
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested, audit_id_for
from ces.services.api_keys import ApiKey, KeyNameTaken, Scope
from ces.services.ports import CacheUnavailable

Decision = ConversionAudited | ConversionRejected


class StoreDown(ConnectionError):
    """What a fake raises where the real adapter would raise its driver's connection error."""


class FakeAuditStore:
    """`ces.adapters.postgres.audit_store.AuditStore` in memory: the first decision per `request_id` stands.

    `record` returns, in input order, the decision that stands for each input (the stored one for a
    request id decided before, also for duplicates inside one call). `down` makes every call raise, as
    a dead database does, before anything is written.
    """

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.decisions: dict[UUID, Decision] = {}
        self.record_calls = 0

    def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        self.record_calls += 1
        self._check_up()
        for decision in decisions:
            self.decisions.setdefault(decision.request_id, decision)
        return [self.decisions[d.request_id] for d in decisions]

    def get(self, request_ids: Sequence[UUID]) -> dict[UUID, Decision]:
        self._check_up()
        return {rid: self.decisions[rid] for rid in request_ids if rid in self.decisions}

    def get_audit(self, audit_id: UUID) -> ConversionAudited | None:
        self._check_up()
        for decision in self.decisions.values():
            if isinstance(decision, ConversionAudited) and decision.audit_id == audit_id:
                return decision
        return None

    def recent(self, limit: int) -> list[ConversionAudited]:
        self._check_up()
        audits = [d for d in self.decisions.values() if isinstance(d, ConversionAudited)]
        return sorted(audits, key=lambda a: a.converted_at, reverse=True)[:limit]

    def _check_up(self) -> None:
        if self.down:
            raise StoreDown("database down")


def stored_rate(target: str, value: str, published_at: datetime, base: str = "EUR") -> Rate:
    """One `exchange_rate` row as the projection stores it (against the provider's base)."""
    return Rate(uuid4(), base, target, Decimal(value), "fake", published_at, published_at + timedelta(minutes=1))


class FakeRateLookup:
    """`ces.services.rate_lookup.RateLookup.latest_many` over stored pivot rates, without cache or database.

    Pairs are served as the real lookup serves them (direct, inverse, cross through `pivot`; None when a
    leg is missing or base == target). Every call's pairs are kept in `calls`.
    """

    def __init__(self, legs: Iterable[Rate], pivot: str = "EUR") -> None:
        self.history = list(legs)
        self.legs = {(leg.base_currency, leg.target_currency): leg for leg in self.history}
        self.pivot = pivot
        self.calls: list[list[tuple[str, str]]] = []
        self.calls_at: list[list[tuple[str, str, datetime]]] = []

    async def at_many(
        self, keys: list[tuple[str, str, datetime]]
    ) -> dict[tuple[str, str, datetime], DerivedRate | None]:
        """Each leg: the newest of the given rows published at or before the key's instant."""
        self.calls_at.append(list(keys))
        result: dict[tuple[str, str, datetime], DerivedRate | None] = {}
        for base, target, at in keys:
            wanted = [
                max(
                    (r for r in self.history if (r.base_currency, r.target_currency) == leg and r.published_at <= at),
                    key=lambda r: r.published_at,
                    default=None,
                )
                for leg in legs_needed(base, target, self.pivot)
            ]
            present = [leg for leg in wanted if leg is not None]
            ok = base != target and len(present) == len(wanted)
            result[(base, target, at)] = derive(base, target, self.pivot, present) if ok else None
        return result

    async def latest_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], DerivedRate | None]:
        self.calls.append(list(pairs))
        result: dict[tuple[str, str], DerivedRate | None] = {}
        for base, target in pairs:
            wanted = [self.legs.get(leg) for leg in legs_needed(base, target, self.pivot)]
            present = [leg for leg in wanted if leg is not None]
            ok = base != target and len(present) == len(wanted)
            result[(base, target)] = derive(base, target, self.pivot, present) if ok else None
        return result


class FakePublisher:
    """An `EventPublisher` that keeps what it was given; `error` makes it raise instead (broker down).

    `journal`, when shared with a `DeadLetterSink`, records the order of publishes and dead letters.
    """

    def __init__(self, *, error: Exception | None = None, journal: list[str] | None = None) -> None:
        self.error = error
        self.published: list[Event] = []
        self.republished: list[Event] = []  # the subset published with `republished=True`
        self.calls = 0
        self.journal = journal if journal is not None else []

    async def publish(self, events: Sequence[Event], *, republished: bool = False) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error
        self.published.extend(events)
        if republished:
            self.republished.extend(events)
        self.journal.extend(f"publish {e.event_type}" for e in events)


class DeadLetterSink:
    """The `send` of a real `ces.adapters.kafka.dead_letters.DeadLetters`: collects (key, value, headers)."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.sent: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        self.journal = journal if journal is not None else []

    async def __call__(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        self.sent.append((key, value, dict(headers)))
        self.journal.append(f"dead-letter {dict(headers)['ces.dlq.reason'].decode()}")

    @property
    def reasons(self) -> list[str]:
        return [headers["ces.dlq.reason"].decode() for _, _, headers in self.sent]


class FakeRateCache:
    """`ces.adapters.redis.rate_cache.RateCache` in memory (the `RateCache` port).

    A pair's entry only moves to a later publication (then fetch time); a revoked rate id is remembered and
    never cached again; revoking the cached rate puts its fallback in place (or nothing). `down` makes every
    call raise `CacheUnavailable`, as an unreachable Redis does. Same assertions as the real one:
    tests/contracts/rate_cache.py.
    """

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.entries: dict[tuple[str, str], Rate] = {}
        self.revoked: set[UUID] = set()

    async def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[Rate | None]:
        self._check_up()
        return [self.entries.get(pair) for pair in pairs]

    async def put_many(self, rates: Iterable[Rate]) -> int:
        self._check_up()
        moved: set[tuple[str, str]] = set()
        for rate in rates:
            pair = (rate.base_currency, rate.target_currency)
            current = self.entries.get(pair)
            if rate.rate_id in self.revoked:
                continue
            if current is not None and (current.published_at, current.fetched_at) >= (
                rate.published_at,
                rate.fetched_at,
            ):
                continue
            self.entries[pair] = rate
            moved.add(pair)
        return len(moved)

    async def put_newest(self, chains: Iterable[Sequence[Rate]]) -> int:
        return await self.put_many([rate for chain in chains for rate in chain])

    async def revoke(self, revoked: Rate, fallback: Rate | None) -> bool:
        self._check_up()
        self.revoked.add(revoked.rate_id)
        pair = (revoked.base_currency, revoked.target_currency)
        current = self.entries.get(pair)
        if current is None or current.rate_id != revoked.rate_id:
            return False
        if fallback is None:
            del self.entries[pair]
        else:
            self.entries[pair] = fallback
        return True

    def _check_up(self) -> None:
        if self.down:
            raise CacheUnavailable("cache down")


class AwaitedStore:
    """A store's `record` as the worker awaits it (`ces.adapters.postgres.async_record.AsyncRecorder`)."""

    def __init__(self, store: FakeAuditStore) -> None:
        self.store = store

    async def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        return self.store.record(decisions)


class FakeApiKeyStore:
    """`ces.adapters.postgres.api_keys.PostgresApiKeyStore` in memory: keys by hash, revoked never deleted."""

    def __init__(self) -> None:
        self.keys: dict[bytes, ApiKey] = {}
        self.finds = 0

    def add(self, name: str, scopes: frozenset[Scope], digest: bytes) -> ApiKey:
        if any(k.name == name for k in self.keys.values()):
            raise KeyNameTaken(name)
        key = ApiKey(uuid4(), name, scopes, datetime(2026, 11, 25, tzinfo=UTC))
        self.keys[digest] = key
        return key

    def find(self, digest: bytes) -> ApiKey | None:
        self.finds += 1
        return self.keys.get(digest)

    def all(self) -> list[ApiKey]:
        return list(self.keys.values())

    def revoke(self, key_id: UUID) -> ApiKey | None:
        for digest, key in self.keys.items():
            if key.id == key_id:
                self.keys[digest] = ApiKey(key.id, key.name, key.scopes, key.created_at, key.created_at)
                return self.keys[digest]
        return None


class FakeBucketScript:
    """`RedisRateLimiter`'s `_TAKE` script in memory, for a bucket that never refills: `granted` of `count` takes,
    in order."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.asked: list[int] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None  # set: calls wait for it (takes pile up behind them)

    async def __call__(self, *, keys: list[str], args: list[Any]) -> list[int]:
        cost, count = args[2], args[3]
        self.asked.append(count)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        granted = min(count, self.tokens // cost)
        self.tokens -= granted * cost
        return [granted, 0 if granted == count else 250]


class FakeScriptClient:
    """A Redis client whose one registered script is `script`."""

    def __init__(self, script: FakeBucketScript) -> None:
        self.script = script

    def register_script(self, source: str) -> FakeBucketScript:
        return self.script


class FakeRateLimiter:
    """A `RateLimiter` that allows `allow` requests per key, then answers `wait` seconds; `down` raises."""

    def __init__(self, *, allow: int = 1_000_000, wait: float = 1.5, down: bool = False) -> None:
        self.allow = allow
        self.wait = wait
        self.down = down
        self.taken: dict[UUID, int] = {}

    async def take(self, key_id: UUID, cost: int = 1) -> float:
        if self.down:
            raise CacheUnavailable("limiter down")
        self.taken[key_id] = self.taken.get(key_id, 0) + cost
        return 0.0 if self.taken[key_id] <= self.allow else self.wait


# The gateway's dependencies (tests/unit/test_http_*.py).
DECIDED_AT = datetime(2024, 3, 15, 16, tzinfo=UTC)


class FakeRequester:
    """The gateway's `Conversions` use case: answers `outcome(request)`, or raises `outcome` if it is an error."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.calls: list[tuple[uuid.UUID, str, str, Decimal]] = []
        self.requested_by: uuid.UUID | None = None
        self.as_of: str | None = None
        self.batches: list[int] = []

    async def convert(self, request: ConversionRequested) -> tuple[Any, bool]:
        self.calls.append((request.request_id, request.base_currency, request.target_currency, request.amount))
        self.requested_by = request.requested_by
        self.as_of = request.as_of
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome(request.request_id, request.base_currency, request.target_currency, request.amount), False

    async def convert_many(
        self, requests: Sequence[ConversionRequested], *, timeout: float, leave_room: int = 0
    ) -> list[Any]:
        """Each as `convert` answers it; an exception outcome is that item's outcome (never raised)."""
        self.batches.append(len(requests))
        outcomes: list[Any] = []
        for request in requests:
            try:
                outcomes.append(await self.convert(request))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


def audited(request_id: uuid.UUID, base: str, target: str, amount: Decimal) -> ConversionAudited:
    rate_id = uuid.uuid4()
    return ConversionAudited(
        audit_id=audit_id_for(request_id),
        request_id=request_id,
        rate_id=rate_id,
        rate_ids=[rate_id],
        rate_kind="direct",
        base_currency=base,
        target_currency=target,
        input_amount=amount,
        rate_value=Decimal("1.0892"),
        margin=Decimal("0.01"),
        output_amount=Decimal("107.83"),
        converted_at=DECIDED_AT,
    )


class FakeRateReads:
    """Stored rows in memory (`rows`), answered like `RateRepository` answers them."""

    def __init__(self, rows: Iterable[Rate] = ()) -> None:
        self.rows = list(rows)

    def latest_per_pair(self, base: str | None = None) -> list[Rate]:
        newest: dict[tuple[str, str], Rate] = {}
        for row in sorted(self.rows, key=lambda r: (r.published_at, r.fetched_at)):
            if base is None or row.base_currency == base:
                newest[(row.base_currency, row.target_currency)] = row
        return list(newest.values())

    def spans(self, pivot: str, targets: set[str], start: date, end: date) -> dict[str, tuple[date, date]]:
        found: dict[str, tuple[date, date]] = {}
        for day, rows in self.daily(pivot, targets, start, end):
            for row in rows:
                first = found.get(row.target_currency, (day, day))[0]
                found[row.target_currency] = (first, day)
        return found

    def find(self, rate_id: UUID) -> tuple[Rate, object | None] | None:
        return next(((r, None) for r in self.rows if r.rate_id == rate_id), None)

    def daily(
        self, pivot: str, targets: set[str], start: date, end: date, *, newest_first: bool = False
    ) -> Iterator[tuple[date, list[Rate]]]:
        by_day: dict[date, list[Rate]] = {}
        for row in sorted(self.rows, key=lambda r: (r.published_at, r.fetched_at)):
            day = row.published_at.astimezone(UTC).date()
            if row.base_currency == pivot and row.target_currency in targets and start <= day <= end:
                by_day.setdefault(day, []).append(row)
        yield from sorted(by_day.items(), reverse=newest_first)

    def pair_history(
        self, base: str, target: str, pivot: str, *, start: datetime, end: datetime, after: datetime | None, limit: int
    ) -> list[DerivedRate]:
        return []


async def all_ready() -> dict[str, tuple[bool, str]]:
    return {"kafka": (True, "fake"), "postgres": (True, "fake"), "redis": (True, "fake"), "replies": (True, "fake")}
