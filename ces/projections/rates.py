"""The rate projection: `RateFetched` events -> immutable `exchange_rate` rows, in batches, idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert

from ces.domain.rates import DerivedRate, Rate, derive, legs_needed
from ces.events.rates import RateFetched
from ces.projections.tables import exchange_rate


def rate_of(event: RateFetched) -> Rate:
    return Rate(
        rate_id=event.rate_id,
        base_currency=event.base_currency,
        target_currency=event.target_currency,
        rate_value=event.rate_value,
        provider_name=event.provider_name,
        published_at=event.published_at,
        fetched_at=event.fetched_at,
    )


class RateProjector:
    """Writes a batch of events in one transaction; replays and redeliveries add nothing.

    Idempotency: the row's primary key is the event's `rate_id`, itself derived from provider,
    publication time and pair, so the same publication fetched twice, redelivered or replayed hits the
    primary key (or the publication's unique key) and `ON CONFLICT DO NOTHING` skips it.
    Blocking (psycopg2): call it from a worker thread, never on the event loop.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def project(self, events: Sequence[RateFetched]) -> list[UUID]:
        """Insert the rows that are new; return their ids."""
        if not events:
            return []
        rows = [
            {
                "id": e.rate_id,
                "base_currency": e.base_currency,
                "target_currency": e.target_currency,
                "rate_value": e.rate_value,
                "provider_name": e.provider_name,
                "published_at": e.published_at,
                "fetched_at": e.fetched_at,
                "fetch_id": e.fetch_id,
                "event_id": e.event_id,
            }
            for e in events
        ]
        stmt = insert(exchange_rate).on_conflict_do_nothing().returning(exchange_rate.c.id)
        with self.engine.begin() as conn:
            return list(conn.execute(stmt, rows).scalars())


class RateRepository:
    """Read side of `exchange_rate` (blocking; call from a thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest(self, base: str, target: str, *, at: datetime | None = None) -> Rate | None:
        query = select(exchange_rate).where(
            exchange_rate.c.base_currency == base, exchange_rate.c.target_currency == target
        )
        if at is not None:
            query = query.where(exchange_rate.c.published_at <= at)
        query = query.order_by(exchange_rate.c.published_at.desc(), exchange_rate.c.fetched_at.desc())
        with self.engine.connect() as conn:
            row = conn.execute(query.limit(1)).mappings().first()
        return rate_from_row(row) if row else None

    def latest_per_pair(self, base: str | None = None) -> list[Rate]:
        """The newest row of every stored pair (of every pair `base -> *` when `base` is given)."""
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
        if base is not None:
            query = query.where(exchange_rate.c.base_currency == base)
        with self.engine.connect() as conn:
            return [rate_from_row(row) for row in conn.execute(query).mappings()]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(exchange_rate)).scalar_one())


def rate_from_row(row: object) -> Rate:
    m = dict(row)  # type: ignore[call-overload]
    return Rate(
        rate_id=m["id"],
        base_currency=m["base_currency"],
        target_currency=m["target_currency"],
        rate_value=m["rate_value"],
        provider_name=m["provider_name"],
        published_at=m["published_at"],
        fetched_at=m["fetched_at"],
    )


def pair_history(
    engine: Engine,
    base: str,
    target: str,
    pivot: str,
    *,
    start: datetime,
    end: datetime,
    after: datetime | None,
    limit: int,
) -> list[DerivedRate]:
    """Rates of `base->target` published in [start, end), oldest first, one page (keyset on published_at).

    Stored pairs come as they are; inverse and cross pairs are derived row by row from legs published
    at the same instant by the same provider, so every entry names its immutable rows.
    """
    legs = legs_needed(base, target, pivot)
    a = exchange_rate.alias("a")
    b = exchange_rate.alias("b")
    query = select(a).where(a.c.base_currency == legs[0][0], a.c.target_currency == legs[0][1])
    if len(legs) == 2:
        query = (
            select(*(c.label(f"a_{c.name}") for c in a.c), *(c.label(f"b_{c.name}") for c in b.c))
            .join_from(
                a,
                b,
                (b.c.published_at == a.c.published_at)
                & (b.c.provider_name == a.c.provider_name)
                & (b.c.base_currency == legs[1][0])
                & (b.c.target_currency == legs[1][1]),
            )
            .where(a.c.base_currency == legs[0][0], a.c.target_currency == legs[0][1])
        )
    query = query.where(a.c.published_at >= start, a.c.published_at < end)
    if after is not None:
        query = query.where(a.c.published_at > after)
    query = query.order_by(a.c.published_at, a.c.fetched_at).limit(limit)
    result = []
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            if len(legs) == 2:
                first = rate_from_row({k[2:]: v for k, v in row.items() if k.startswith("a_")})
                second = rate_from_row({k[2:]: v for k, v in row.items() if k.startswith("b_")})
                result.append(derive(base, target, pivot, [first, second]))
            else:
                result.append(derive(base, target, pivot, [rate_from_row(row)]))
    return result
