"""The rate projection's writes: `RateFetched` -> immutable `exchange_rate` rows, `RateRevoked` -> revocation rows.

Batches, one transaction each, idempotent (the `RateRows` port of `ces.projections.rate_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    CHAR,
    Connection,
    DateTime,
    Engine,
    Select,
    Text,
    cast,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert

from ces.adapters.postgres.rate_copy import copied_insert, staged_insert, staged_revoked
from ces.adapters.postgres.rate_store import latest_query, rate_from_row
from ces.adapters.postgres.tables import exchange_rate, exchange_rate_revocation
from ces.domain.rates import DEFAULT_MAX_CLOCK_SKEW, Rate, Withdrawal, implausible_publication
from ces.events.rates import RateRevoked, rate_fetched_event_ids
from ces.projections.rate_rows import (
    CONFLICTING_REPUBLICATION,
    IMPLAUSIBLE_PUBLISHED_AT,
    SAME_CURRENCY_PAIR,
    UNDERIVED_EVENT_ID,
    UNKNOWN_RATE,
    CurrentRates,
    Projection,
    RateEvent,
    RateIds,
    Refusal,
)
from ces.projections.rate_wire import RateRow, rate_of_row, row_of


def _identity(rate_id: UUID, base: str, target: str, provider: str, published_at: datetime) -> tuple[object, ...]:
    return (rate_id, base, target, provider, published_at)


class RateProjector:
    """Writes a batch of events in one transaction; replays and redeliveries add nothing.

    Rules (docs/rates.md):
    - Plausible only: a rate published later than its fetch time plus `max_clock_skew`, or of a pair
      with itself, is refused (`implausible_published_at`, `same_currency_pair`).
    - One event per rate: a `RateFetched` whose `event_id` is not the one derived from its `rate_id`
      (`rate_fetched_event_id`, what every CES producer writes) is refused, `underived_event_id`. So every
      row holds its id's derived event id, and the primary key on `id` makes `event_id` unique (a SHA-1
      name-based id: two rate ids with one event id would be a SHA-1 collision); migration 0010 dropped the
      unique index that checked it again per row.
    - One id, one value: the row's primary key is the event's `rate_id`, itself derived from provider,
      publication time and pair. The same publication again (redelivery, replay, re-fetch) with the same
      value is a no-op (`ON CONFLICT DO NOTHING`). A `RateFetched` whose id is stored with another value or
      publication, or (its id not stored) whose publication is held by another row, is refused,
      `conflicting_republication`:
      the first stored row stands, and it is the one the cache and the audits use.
    - Revocations: one row per revoked rate, the first revocation stands; a revocation of a rate that is
      not stored (or of another pair than the one it names) is refused, `unknown_rate`.
    Database errors propagate untouched: whether to retry or to isolate a message is the batch
    consumer's decision, never the projection's.
    Blocking (psycopg2): call it from a worker thread, never on the event loop.
    """

    def __init__(self, engine: Engine, *, max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW) -> None:
        self.engine = engine
        self.max_clock_skew = max_clock_skew

    def project(self, events: Sequence[RateEvent]) -> Projection:
        result = Projection()
        if not events:
            return result
        candidates: list[tuple[int, RateRow]] = []
        fetched: list[tuple[int, RateRow]] = []
        revoked: list[tuple[int, RateRevoked]] = []
        skew = self.max_clock_skew
        for i, e in enumerate(events):
            if isinstance(e, RateRevoked):
                revoked.append((i, e))
            else:
                candidates.append((i, e if isinstance(e, RateRow) else row_of(e)))
        # Both ids are lower-case hyphenated text in a row (`read_row`, `row_of`): compared as they are.
        derived = rate_fetched_event_ids([row.rate_id for _, row in candidates])
        for (i, row), event_id in zip(candidates, derived, strict=True):
            if row.event_id != event_id:
                forged = f"event_id {row.event_id} is not rate {row.rate_id}'s RateFetched event id {event_id}"
                result.refused.append(Refusal(i, UNDERIVED_EVENT_ID, forged))
            elif row.base_currency == row.target_currency:
                result.refused.append(Refusal(i, SAME_CURRENCY_PAIR, f"{row.base_currency}->{row.target_currency}"))
            elif (why := implausible_publication(row.published_at, row.fetched_at, skew)) is not None:
                result.refused.append(Refusal(i, IMPLAUSIBLE_PUBLISHED_AT, why))
            else:
                fetched.append((i, row))
        with self.engine.begin() as conn:
            accepted, all_new = self._insert_rates(conn, fetched, result)
            self._insert_revocations(conn, revoked, result)
            if all_new:
                # A revocation names a stored rate (a foreign key; rows are never deleted), so a rate this
                # transaction inserted can only be revoked by a revocation it inserted too.
                gone = {str(g) for g in result.revocations_inserted}
            else:
                gone = self._revoked(conn, accepted) if accepted else set()
            result.current = CurrentRates(
                [r for r in accepted if (r.rate_id if isinstance(r, RateRow) else str(r.rate_id)) not in gone]
                if gone
                else accepted
            )
        result.refused.sort(key=lambda r: r.index)
        return result

    def _write(self, conn: Connection, rows: list[RateRow]) -> set[str] | None:
        """Insert the rows in order, `ON CONFLICT DO NOTHING` on every unique key: the ids inserted, or None
        when every row was. (tests/integration/test_rate_projector_bulk.py overrides it with a multi-row
        INSERT as the oracle these rules are checked against.)"""
        return None if copied_insert(conn, rows) else staged_insert(conn, rows)

    def _revoked(self, conn: Connection, accepted: list[Rate | RateRow]) -> set[str]:
        """Which of the accepted rates are revoked, ids as text (`_write` staged rows covering them all: it
        is asked only when not every row went in)."""
        return staged_revoked(conn)

    def _insert_rates(
        self, conn: Connection, fetched: list[tuple[int, RateRow]], result: Projection
    ) -> tuple[list[Rate | RateRow], bool]:
        """The accepted rates, and whether every one of them was inserted by this transaction."""
        if not fetched:
            return [], True
        # DO NOTHING on any unique key (id, publication); what was skipped is checked below.
        rows = [row for _, row in fetched]
        new_text = self._write(conn, rows)
        if new_text is None:  # every row went in (so no two shared a key): each holds its event's values
            result.inserted = RateIds([row.rate_id for row in rows])
            return list(rows), True
        new = {UUID(t) for t in new_text}
        events = [(i, rate_of_row(row)) for i, row in fetched]
        result.inserted = RateIds(list(dict.fromkeys(e.rate_id for _, e in events if e.rate_id in new)))
        by_id: dict[UUID, Rate] = {}
        by_publication: dict[tuple[object, ...], Rate] = {}

        def remember(row: Any) -> None:
            rate = rate_from_row(row)
            by_id[rate.rate_id] = rate
            by_publication[(rate.provider_name, rate.base_currency, rate.target_currency, rate.published_at)] = rate

        # A row this statement inserted holds exactly its event's values (unconstrained NUMERIC keeps every
        # digit, timestamptz every microsecond): no need to read it back. Only what was not inserted needs
        # a look at the stored rows (the usual batch inserts everything).
        pending: list[Rate] = []
        for _, e in events:
            if e.rate_id in new and e.rate_id not in by_id:
                by_id[e.rate_id] = e
            else:
                pending.append(e)
        if pending:
            # By primary key first: a redelivery or re-fetch finds its row there and needs nothing more.
            same_id = select(exchange_rate).where(exchange_rate.c.id.in_([e.rate_id for e in pending]))
            for row in conn.execute(same_id).mappings():
                remember(row)
            # An insert skipped although no row has the id: another row holds the publication (a conflict;
            # its event id cannot be held elsewhere, being derived from the id); fetch it to say which.
            blocked = [e for e in pending if e.rate_id not in by_id]
            if blocked:
                for row in conn.execute(_stored_matching(blocked)).mappings():
                    remember(row)
        accepted: list[Rate | RateRow] = []
        for i, e in events:
            want = _identity(e.rate_id, e.base_currency, e.target_currency, e.provider_name, e.published_at)
            # The row under the event's id decides. Only when there is none, the row holding its publication is
            # what blocked the insert.
            own = by_id.get(e.rate_id) or by_publication.get(
                (e.provider_name, e.base_currency, e.target_currency, e.published_at)
            )
            found = [own] if own is not None else []
            # Numeric equality: 1.07 and 1.070 are the same value (the stored digits are what is used).
            clash = next(
                (
                    r
                    for r in found
                    if r.rate_value != e.rate_value
                    or _identity(r.rate_id, r.base_currency, r.target_currency, r.provider_name, r.published_at) != want
                ),
                None,
            )
            if not found:  # every unique key was checked: the row must be there
                raise RuntimeError(f"rate {e.rate_id} was neither inserted nor found")
            if clash is not None:
                held = clash
                result.refused.append(
                    Refusal(
                        i,
                        CONFLICTING_REPUBLICATION,
                        f"rate {e.rate_id} ({e.provider_name} {e.base_currency}->{e.target_currency} published "
                        f"{e.published_at.isoformat()}) = {e.rate_value}, but PostgreSQL holds rate "
                        f"{held.rate_id} ({held.provider_name} {held.base_currency}->{held.target_currency} "
                        f"published {held.published_at.isoformat()}) = {held.rate_value}; the stored row stands",
                    )
                )
                continue
            accepted.append(found[0])
        return accepted, False

    @staticmethod
    def _insert_revocations(conn: Connection, revoked: list[tuple[int, RateRevoked]], result: Projection) -> None:
        if not revoked:
            return
        t = exchange_rate.c
        rows = {
            row["id"]: rate_from_row(row)
            for row in conn.execute(select(exchange_rate).where(t.id.in_([e.rate_id for _, e in revoked]))).mappings()
        }
        valid: list[RateRevoked] = []
        for i, e in revoked:
            rate = rows.get(e.rate_id)
            if rate is None or (rate.base_currency, rate.target_currency) != (e.base_currency, e.target_currency):
                where = "not stored" if rate is None else f"a rate of {rate.base_currency}->{rate.target_currency}"
                result.refused.append(
                    Refusal(
                        i,
                        UNKNOWN_RATE,
                        f"revocation of {e.base_currency}->{e.target_currency} rate {e.rate_id}: {where}",
                    )
                )
                continue
            valid.append(e)
        if not valid:
            return
        stmt = insert(exchange_rate_revocation).on_conflict_do_nothing().returning(exchange_rate_revocation.c.rate_id)
        result.revocations_inserted = list(
            conn.execute(
                stmt,
                [
                    {
                        "rate_id": e.rate_id,
                        "reason": e.reason,
                        "revoked_by": e.revoked_by,
                        "revoked_at": e.revoked_at,
                        "event_id": e.event_id,
                    }
                    for e in valid
                ],
            ).scalars()
        )
        # Every valid revocation (new or redelivered) says what its pair falls back to, so a cache that
        # missed the first delivery is corrected by the second.
        for e in valid:
            replacement = conn.execute(latest_query(e.base_currency, e.target_currency).limit(1)).mappings().first()
            result.withdrawals.append(Withdrawal(rows[e.rate_id], rate_from_row(replacement) if replacement else None))


def _stored_matching(events: list[Rate]) -> Select[Any]:
    """Stored rows sharing the publication with any of `events` (an index lookup each)."""
    t = exchange_rate.c
    publications = (
        select(
            func.unnest(cast([e.provider_name for e in events], ARRAY(Text))).label("p"),
            # CHAR(3) like the columns: compared as text, the currency columns could not bound the index scan
            # (a lookup of a batch's publications read the whole index: ~200 ms on the ECB history).
            func.unnest(cast([e.base_currency for e in events], ARRAY(CHAR(3)))).label("b"),
            func.unnest(cast([e.target_currency for e in events], ARRAY(CHAR(3)))).label("t"),
            func.unnest(cast([e.published_at for e in events], ARRAY(DateTime(timezone=True)))).label("at"),
        )
    ).subquery()
    # DISTINCT: two events of a batch may name one publication.
    return (
        select(exchange_rate)
        .distinct()
        .join(
            publications,
            (t.provider_name == publications.c.p)
            & (t.base_currency == publications.c.b)
            & (t.target_currency == publications.c.t)
            & (t.published_at == publications.c.at),
        )
    )
