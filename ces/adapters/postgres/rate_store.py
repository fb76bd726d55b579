"""Reading stored rates: the newest non-revoked row of a pair, a pair's history, a range day by day, one row by id.

Rows are written by `rate_projector.py`; every lookup here skips revoked rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    exists,
    func,
    select,
    text,
)

from ces.adapters.postgres.tables import exchange_rate, exchange_rate_revocation
from ces.domain.rates import DerivedRate, Rate, Withdrawal, derive, legs_needed


def not_revoked(rate_id: Any) -> ColumnElement[bool]:
    """The condition "this rate has no revocation row", for any column holding an `exchange_rate.id`."""
    r = exchange_rate_revocation.c
    return ~exists().where(r.rate_id == rate_id)


def pivot_rows_in(pivot: str, targets: set[str], start: date, end: date) -> tuple[ColumnElement[bool], ...]:
    """The conditions "a non-revoked `pivot -> X` row, X in `targets`, published on a UTC day in [start, end]"."""
    t = exchange_rate.c
    return (
        t.base_currency == pivot,
        t.target_currency.in_(sorted(targets)),
        t.published_at >= _instant(start),
        t.published_at < _instant(end + timedelta(days=1)),
        not_revoked(t.id),
    )


def latest_query(base: str, target: str, at: datetime | None = None) -> Select[Any]:
    """The pair's rows, newest first, revoked rows left out (so a revocation falls back to the previous row)."""
    t = exchange_rate.c
    query = select(exchange_rate).where(t.base_currency == base, t.target_currency == target, not_revoked(t.id))
    if at is not None:
        query = query.where(t.published_at <= at)
    return query.order_by(t.published_at.desc(), t.fetched_at.desc())


# Ordered as `latest_query` orders: newest publication, then newest fetch; revoked rows left out.
LATEST_AT_MANY = text(
    """
    SELECT k.i, e.id, e.base_currency, e.target_currency, e.rate_value, e.provider_name, e.published_at,
           e.fetched_at
    FROM unnest(CAST(:bases AS char(3)[]), CAST(:targets AS char(3)[]), CAST(:ats AS timestamptz[]))
         WITH ORDINALITY AS k (base, target, at, i)
    CROSS JOIN LATERAL (
        SELECT r.* FROM exchange_rate r
        WHERE r.base_currency = k.base AND r.target_currency = k.target AND r.published_at <= k.at
          AND NOT EXISTS (SELECT 1 FROM exchange_rate_revocation v WHERE v.rate_id = r.id)
        ORDER BY r.published_at DESC, r.fetched_at DESC
        LIMIT 1
    ) e
    """
)


# The newest non-revoked row of each pair, as `latest_query` orders them, one index descent per pair: the
# recursive part steps from pair to pair through the index (base_currency, target_currency, ...), the LATERAL
# takes each pair's newest. (`DISTINCT ON (pair) ... ORDER BY pair, published_at DESC, fetched_at DESC` reads
# every row of the table: 200 ms for the ECB history, and 4x that once the pair index became the unique
# publication index of migration 0009, whose last key is the provider, not `fetched_at`.)
LATEST_PER_PAIR = text(
    """
    WITH RECURSIVE pairs (base, target) AS (
        (SELECT base_currency, target_currency FROM exchange_rate
         WHERE CAST(:base AS char(3)) IS NULL OR base_currency >= :base
         ORDER BY base_currency, target_currency LIMIT 1)
        UNION ALL
        SELECT n.base_currency, n.target_currency FROM pairs p CROSS JOIN LATERAL (
            SELECT base_currency, target_currency FROM exchange_rate
            WHERE (base_currency, target_currency) > (p.base, p.target)
            ORDER BY base_currency, target_currency LIMIT 1
        ) n
        WHERE CAST(:base AS char(3)) IS NULL OR p.base = :base
    )
    SELECT e.* FROM pairs p CROSS JOIN LATERAL (
        SELECT r.* FROM exchange_rate r
        WHERE r.base_currency = p.base AND r.target_currency = p.target
          AND NOT EXISTS (SELECT 1 FROM exchange_rate_revocation v WHERE v.rate_id = r.id)
        ORDER BY r.published_at DESC, r.fetched_at DESC
        LIMIT 1
    ) e
    WHERE CAST(:base AS char(3)) IS NULL OR p.base = :base
    ORDER BY p.base, p.target
    """
)


class RateRepository:
    """Read side of `exchange_rate` (blocking; call from a thread). Revoked rows are never answered."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest(self, base: str, target: str, *, at: datetime | None = None) -> Rate | None:
        with self.engine.connect() as conn:
            row = conn.execute(latest_query(base, target, at).limit(1)).mappings().first()
        return rate_from_row(row) if row else None

    def latest_at_many(self, keys: Sequence[tuple[str, str, datetime]]) -> list[Rate | None]:
        """For each (base, target, at): the newest non-revoked row published at or before `at`, or None.

        One statement for any number of keys: a LATERAL join over the keys, each one descent of the index
        `exchange_rate_publication` (base, target, published_at DESC, provider)."""
        if not keys:
            return []
        params = {
            "bases": [k[0] for k in keys],
            "targets": [k[1] for k in keys],
            "ats": [k[2] for k in keys],
        }
        found: list[Rate | None] = [None] * len(keys)
        with self.engine.connect() as conn:
            for row in conn.execute(LATEST_AT_MANY, params).mappings():
                found[row["i"] - 1] = rate_from_row(row)
        return found

    def pair_history(
        self, base: str, target: str, pivot: str, *, start: datetime, end: datetime, after: datetime | None, limit: int
    ) -> list[DerivedRate]:
        return pair_history(self.engine, base, target, pivot, start=start, end=end, after=after, limit=limit)

    def daily(
        self, pivot: str, targets: set[str], start: date, end: date, *, newest_first: bool = False
    ) -> Iterator[tuple[date, list[Rate]]]:
        """The stored `pivot -> X` rows of [start, end], one UTC day at a time (`daily_rows`)."""
        return daily_rows(self.engine, pivot, targets, start, end, newest_first=newest_first)

    def spans(self, pivot: str, targets: set[str], start: date, end: date) -> dict[str, tuple[date, date]]:
        """The first and last UTC day with a non-revoked `pivot -> X` row in [start, end], per X that has one."""
        t = exchange_rate.c
        query = (
            select(t.target_currency, func.min(t.published_at), func.max(t.published_at))
            .where(
                *pivot_rows_in(pivot, targets, start, end),
            )
            .group_by(t.target_currency)
        )
        with self.engine.connect() as conn:
            return {
                target: (first.astimezone(UTC).date(), last.astimezone(UTC).date())
                for target, first, last in conn.execute(query)
            }

    def latest_per_pair(self, base: str | None = None) -> list[Rate]:
        """The newest non-revoked row of every stored pair (of every pair `base -> *` when `base` is given),
        ordered by pair (`LATEST_PER_PAIR`)."""
        with self.engine.connect() as conn:
            return [rate_from_row(row) for row in conn.execute(LATEST_PER_PAIR, {"base": base}).mappings()]

    def find(self, rate_id: UUID) -> tuple[Rate, Revocation | None] | None:
        """A row by id, revoked or not, with its revocation (for `ces rates revoke`)."""
        r = exchange_rate_revocation.c
        query = select(exchange_rate, r.reason, r.revoked_by, r.revoked_at).outerjoin(
            exchange_rate_revocation, r.rate_id == exchange_rate.c.id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query.where(exchange_rate.c.id == rate_id)).mappings().first()
        if row is None:
            return None
        revocation = Revocation(row["reason"], row["revoked_by"], row["revoked_at"]) if row["revoked_at"] else None
        return rate_from_row(row), revocation

    def withdrawals(self) -> list[Withdrawal]:
        """Every revoked row with its pair's fallback (newest non-revoked row), for `ces cache rebuild`."""
        r = exchange_rate_revocation.c
        query = select(exchange_rate).join(exchange_rate_revocation, r.rate_id == exchange_rate.c.id)
        with self.engine.connect() as conn:
            revoked = [rate_from_row(row) for row in conn.execute(query).mappings()]
            fallbacks = {
                pair: conn.execute(latest_query(*pair).limit(1)).mappings().first()
                for pair in {(rate.base_currency, rate.target_currency) for rate in revoked}
            }
        return [
            Withdrawal(
                rate, rate_from_row(row) if (row := fallbacks[(rate.base_currency, rate.target_currency)]) else None
            )
            for rate in revoked
        ]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(exchange_rate)).scalar_one())


@dataclass(frozen=True)
class Revocation:
    reason: str
    revoked_by: str
    revoked_at: datetime


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
    at the same instant by the same provider, so every entry names its immutable rows. Revoked rows
    (and cross rates with a revoked leg) are left out.
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
    query = query.where(a.c.published_at >= start, a.c.published_at < end, not_revoked(a.c.id))
    if len(legs) == 2:
        query = query.where(not_revoked(b.c.id))
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


# Rows fetched per round trip of the server-side cursor: bounds the memory of one long read.
FETCH_ROWS = 5000


def _instant(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def daily_rows(
    engine: Engine, pivot: str, targets: set[str], start: date, end: date, *, newest_first: bool = False
) -> Iterator[tuple[date, list[Rate]]]:
    """Every non-revoked `pivot -> X` row (X in `targets`) published on the UTC days [start, end], one day at
    a time, oldest day first (or newest first). Blocking: iterate it in a thread; close it to stop early."""
    t = exchange_rate.c
    order = t.published_at.desc() if newest_first else t.published_at
    # Columns in `Rate`'s field order: rows become Rates positionally (this loop runs once per stored row).
    columns = (t.id, t.base_currency, t.target_currency, t.rate_value, t.provider_name, t.published_at, t.fetched_at)
    query = (
        select(*columns)
        .where(
            *pivot_rows_in(pivot, targets, start, end),
        )
        .order_by(order, t.fetched_at)
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(query)
        day: date | None = None
        instant: datetime | None = None
        rows: list[Rate] = []
        for row in result:
            rate = Rate(*row)
            if rate.published_at != instant:  # a publication's rows are adjacent: one date conversion each
                instant = rate.published_at
                published = instant.astimezone(UTC).date()
                if published != day:
                    if day is not None:
                        yield day, rows
                    day, rows = published, []
            rows.append(rate)
        if day is not None:
            yield day, rows
