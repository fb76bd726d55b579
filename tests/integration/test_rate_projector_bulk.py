"""The rate projection's bulk write (COPY straight in, else COPY + one INSERT ... SELECT) against the multi-row
INSERT it replaced: the same batches give the same rows, the same refusals (reasons and messages) and the same
results, whether the events come decoded or as the rows `read_row` takes straight from their canonical bytes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.dialects.postgresql import insert

from ces.adapters.postgres import rate_projector
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.tables import exchange_rate, exchange_rate_revocation
from ces.domain.rates import Rate
from ces.events.rates import RateFetched, RateRevoked, rate_fetched_event_id
from ces.projections.rate_rows import Projection, RateEvent
from ces.projections.rate_wire import RateRow, read_row
from ces.settings import Settings
from tests.integration.conftest import migrated_schema

T0 = datetime(2024, 3, 14, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def fetched(target: str, value: str, published_at: datetime, base: str = "EUR", **fields: Any) -> RateFetched:
    event = RateFetched.for_quote(
        provider_name="ecb",
        base_currency=base,
        target_currency=target,
        rate_value=Decimal(value),
        published_at=published_at,
        fetched_at=fields.pop("fetched_at", published_at + timedelta(minutes=5)),
        fetch_id=uuid.UUID(int=published_at.toordinal()),
    )
    return event.model_copy(update=fields) if fields else event


def revoked(rate: RateFetched, reason: str = "wrong value", target: str | None = None) -> RateRevoked:
    return RateRevoked.for_rate(
        rate_id=rate.rate_id,
        base_currency=rate.base_currency,
        target_currency=target or rate.target_currency,
        reason=reason,
        revoked_by="ops",
        at=T0 + 10 * DAY,
    )


def batches() -> list[list[RateEvent]]:
    usd, jpy, gbp = fetched("USD", "1.0892", T0), fetched("JPY", "161.87", T0), fetched("GBP", "0.8571", T0)
    usd2, jpy2 = fetched("USD", "1.0901", T0 + DAY), fetched("JPY", "162.01", T0 + DAY)
    usd3 = fetched("USD", "1.0950", T0 + 2 * DAY)
    return [
        [
            usd,
            jpy,
            usd,  # the same event twice in a batch
            fetched("USD", "1.08920", T0),  # the same value with another scale: a no-op
            fetched("USD", "1.1111", T0),  # the same publication with another value, in the same batch
            gbp,
            fetched("CHF", "0.95", T0 + DAY, fetched_at=T0),  # published a day after it was fetched
            fetched("EUR", "1", T0),  # a pair with itself
            revoked(jpy),  # a rate of this very batch
            revoked(usd2),  # a rate later in this batch (a batch's rates go in before its revocations)
            revoked(fetched("SEK", "11.2", T0)),  # never stored
            revoked(gbp, target="USD"),  # another pair than the rate's
            usd2,
            jpy2,
        ],
        [
            *[usd, jpy, gbp, usd2],  # a redelivery
            fetched("USD", "1.2000", T0),  # a conflicting republication of a stored row
            fetched("USD", "1.0892", T0 + 3 * DAY, event_id=usd2.event_id),  # another row's event id: underived
            fetched("GBP", "0.86", T0 + DAY, event_id=uuid.UUID(int=11)),  # a new rate, its event id not derived
            # another row's publication under a new id (its event id derived from that id)
            fetched("JPY", "161.87", T0, rate_id=uuid.UUID(int=7), event_id=rate_fetched_event_id(uuid.UUID(int=7))),
            revoked(jpy, reason="redelivered with another reason"),  # the first revocation stands
            revoked(usd2),  # the newest USD: USD falls back to T0
            usd3,
            revoked(usd3),  # revoked in the batch it arrives in: never current
            fetched("CHF", "0.96", T0 + DAY),
        ],
        [*[usd, usd2, usd3], revoked(usd), revoked(jpy2)],  # every USD row revoked but one... then JPY's last
    ]


def described(result: Projection) -> dict[str, Any]:
    return {
        "inserted": result.inserted,
        "revocations": result.revocations_inserted,
        "current": result.current,
        "withdrawals": result.withdrawals,
        "refused": result.refused,
    }


def table(engine: Engine, query: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query))]


RATES = (
    "SELECT id, base_currency, target_currency, rate_value::text, provider_name, published_at, fetched_at, "
    "fetch_id, event_id FROM exchange_rate ORDER BY id"
)
REVOCATIONS = "SELECT rate_id, reason, revoked_by, revoked_at, event_id FROM exchange_rate_revocation ORDER BY rate_id"


@pytest.fixture
def second_schema(settings: Settings, unique: str) -> Iterator[Engine]:
    with migrated_schema(settings, f"test_{unique}_b") as engine:
        yield engine


class RowInsertProjector(RateProjector):
    """The oracle: the multi-row INSERT the COPY replaced (same statement semantics, values as objects)."""

    def _write(self, conn: Connection, rows: list[RateRow]) -> set[str] | None:
        values = [
            {
                "id": uuid.UUID(r.rate_id),
                "base_currency": r.base_currency,
                "target_currency": r.target_currency,
                "rate_value": Decimal(r.rate_value),
                "provider_name": r.provider_name,
                "published_at": r.published_at,
                "fetched_at": r.fetched_at,
                "fetch_id": uuid.UUID(r.fetch_id),
                "event_id": uuid.UUID(r.event_id),
            }
            for r in rows
        ]
        stmt = insert(exchange_rate).on_conflict_do_nothing().returning(exchange_rate.c.id)
        new = {str(i) for i in conn.execute(stmt, values).scalars()}
        return None if len(new) == len(rows) else new

    def _revoked(self, conn: Connection, accepted: list[Rate]) -> set[str]:
        ids = [r.rate_id for r in accepted]
        r = exchange_rate_revocation.c
        return {str(i) for i in conn.execute(select(r.rate_id).where(r.rate_id.in_(ids))).scalars()} if ids else set()


def as_rows(batch: Sequence[RateEvent]) -> list[RateEvent]:
    """The batch as the live handler hands it over: a canonical `RateFetched` as its row."""
    out: list[RateEvent] = []
    for e in batch:
        row = read_row(e.to_json()) if isinstance(e, RateFetched) else None
        out.append(row if row is not None else e)
    return out


def project_all(projector: RateProjector, batches: Sequence[Sequence[RateEvent]]) -> list[dict[str, Any]]:
    return [described(projector.project(batch)) for batch in batches]


def test_bulk_and_row_inserts_write_the_same_rows_and_refuse_the_same_events(
    pg_schema: tuple[Engine, str], second_schema: Engine
) -> None:
    bulk_engine, _ = pg_schema
    assert all(isinstance(e, RateRow) for e in as_rows(batches()[0]) if not isinstance(e, RateRevoked))
    bulk = project_all(RateProjector(bulk_engine), [as_rows(b) for b in batches()])
    rows = project_all(RowInsertProjector(second_schema), batches())
    assert bulk == rows
    assert table(bulk_engine, RATES) == table(second_schema, RATES)
    assert table(bulk_engine, REVOCATIONS) == table(second_schema, REVOCATIONS)
    # The batches exercise what they claim to (so the equality above is not an equality of nothing).
    first, second, third = bulk
    assert [r.reason for r in first["refused"]] == [
        "conflicting_republication",
        "implausible_published_at",
        "same_currency_pair",
        "unknown_rate",
        "unknown_rate",
    ]
    assert [r.reason for r in second["refused"]] == [
        "conflicting_republication",
        "underived_event_id",
        "underived_event_id",
        "conflicting_republication",
    ]
    assert "PostgreSQL holds rate" in second["refused"][0].detail
    assert len(first["inserted"]) == 5 and len(first["revocations"]) == 2
    assert len(second["inserted"]) == 2 and len(second["revocations"]) == 1
    assert third["inserted"] == [] and len(third["revocations"]) == 2
    assert third["current"] == [] and [w.replacement for w in third["withdrawals"]] == [None, None]
    assert table(bulk_engine, "SELECT rate_value::text FROM exchange_rate WHERE rate_value = 1.0892") == [("1.0892",)]


def test_bulk_insert_keeps_every_digit_and_instant(pg_schema: tuple[Engine, str], second_schema: Engine) -> None:
    engine, _ = pg_schema
    odd = [
        fetched("IDR", "0.0000163212000", T0 + timedelta(microseconds=1)),
        fetched("ROL", "40000.1234", T0 + timedelta(microseconds=999999)),
        fetched("XAU", "1E+3", T0),
        fetched("XAG", "1.91E-7", T0),
    ]
    assert RateProjector(engine).project(as_rows(odd)).inserted == [e.rate_id for e in odd]
    RowInsertProjector(second_schema).project(odd)
    assert table(engine, RATES) == table(second_schema, RATES)


def test_a_batch_of_new_rates_is_copied_straight_in_and_a_batch_hitting_a_key_is_staged(
    pg_schema: tuple[Engine, str], second_schema: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = pg_schema
    usd, jpy, gbp = fetched("USD", "1.0892", T0), fetched("JPY", "161.87", T0), fetched("GBP", "0.8571", T0 + DAY)
    new = [usd, jpy, revoked(jpy), gbp]  # a rate revoked in the batch that inserts it: never current

    def staged(*_: object) -> None:
        raise AssertionError("a batch of new rates went through the staging table")

    with monkeypatch.context() as patched:
        patched.setattr(rate_projector, "staged_insert", staged)
        patched.setattr(rate_projector, "staged_revoked", staged)
        copied = described(RateProjector(engine).project(as_rows(new)))
    assert copied == described(RowInsertProjector(second_schema).project(new))
    assert copied["inserted"] == [usd.rate_id, jpy.rate_id, gbp.rate_id] and len(copied["revocations"]) == 1
    assert [r.rate_id for r in copied["current"]] == [usd.rate_id, gbp.rate_id]
    # A redelivered rate next to a new one: the COPY hits the stored key, nothing of it stays, the
    # staging table takes the batch (the new rate in, the stored one a no-op, the revoked one not current).
    again = [fetched("CHF", "0.95", T0), usd, jpy]
    staged_result = described(RateProjector(engine).project(as_rows(again)))
    assert staged_result == described(RowInsertProjector(second_schema).project(again))
    assert len(staged_result["inserted"]) == 1 and [r.target_currency for r in staged_result["current"]] == [
        "CHF",
        "USD",
    ]
    assert table(engine, RATES) == table(second_schema, RATES)
    assert table(engine, REVOCATIONS) == table(second_schema, REVOCATIONS)
