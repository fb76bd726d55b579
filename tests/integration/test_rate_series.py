"""Reading a range day by day from PostgreSQL (`RateRepository.daily`, `.spans`): streamed, ordered, revocations
skipped, the same answers as the fake the handler tests use."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from ces.adapters.postgres import rate_store
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.rate_store import RateRepository
from ces.events.rates import RateRevoked
from tests.fakes import FakeRateReads
from tests.integration.test_rate_projection import rate_event


def test_daily_groups_by_utc_day_in_order_skips_revoked_rows_and_matches_the_fake(
    pg_schema: tuple[Engine, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = pg_schema
    start = datetime(2024, 3, 1, 15, tzinfo=UTC)
    events = [
        rate_event(target, f"{1 + day / 100:.2f}", start + timedelta(days=day))
        for day in range(10)
        for target in ("USD", "GBP", "JPY")
    ]
    later_same_day = rate_event("USD", "9.99", start + timedelta(days=2, hours=3), provider="fixer")
    revoked = events[3]  # USD on day 1
    RateProjector(engine).project(
        [
            *events,
            later_same_day,
            RateRevoked.for_rate(
                rate_id=revoked.rate_id,
                base_currency="EUR",
                target_currency="USD",
                reason="x",
                revoked_by="t",
                at=start,
            ),
        ]
    )
    rows = RateRepository(engine)
    monkeypatch.setattr(rate_store, "FETCH_ROWS", 4)  # several cursor round trips
    days = list(rows.daily("EUR", {"USD", "GBP"}, date(2024, 3, 1), date(2024, 3, 5)))
    newest = list(rows.daily("EUR", {"USD"}, date(2024, 3, 1), date(2024, 3, 10), newest_first=True))
    assert [day for day, _ in days] == [date(2024, 3, d) for d in range(1, 6)]
    assert {r.target_currency for r in days[1][1]} == {"GBP"}  # the revoked USD row is left out
    assert [r.rate_value for r in days[2][1] if r.target_currency == "USD"] == [
        Decimal("1.02"),
        Decimal("9.99"),
    ]  # published order
    assert [day for day, _ in newest][:2] == [date(2024, 3, 10), date(2024, 3, 9)]
    spans = rows.spans("EUR", {"USD", "GBP", "CHF"}, date(2024, 3, 2), date(2024, 3, 4))
    assert spans == {"USD": (date(2024, 3, 3), date(2024, 3, 4)), "GBP": (date(2024, 3, 2), date(2024, 3, 4))}
    fake = FakeRateReads(
        r
        for _, day_rows in rows.daily("EUR", {"USD", "GBP", "JPY"}, date(2024, 1, 1), date(2024, 12, 31))
        for r in day_rows
    )

    def ids(by_day: object) -> list[tuple[date, set[object]]]:
        return [(day, {r.rate_id for r in day_rows}) for day, day_rows in by_day]  # type: ignore[attr-defined]

    assert ids(fake.daily("EUR", {"USD", "GBP"}, date(2024, 3, 1), date(2024, 3, 5))) == ids(days)
    assert fake.spans("EUR", {"USD", "GBP", "CHF"}, date(2024, 3, 2), date(2024, 3, 4)) == spans
