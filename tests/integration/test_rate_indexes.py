"""Migration 0009 against real PostgreSQL: one unique index for the publication key and the pair lookups.

It refuses exactly what the 0008 constraint refused (the same four columns), the downgrade restores the
0008 indexes, and `latest_per_pair`'s loose index scan answers what the `DISTINCT ON` query it replaced
answered (several bases and providers, ties on `published_at`, revoked rows, a pair revoked entirely).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from ces.adapters.postgres import migrate
from ces.adapters.postgres.rate_projector import RateProjector, _stored_matching
from ces.adapters.postgres.rate_store import RateRepository, not_revoked, rate_from_row
from ces.adapters.postgres.tables import exchange_rate
from ces.domain.rates import Rate
from ces.events.rates import RateFetched, RateRevoked
from ces.settings import Settings

T0 = datetime(2024, 3, 1, 14, 0, tzinfo=UTC)


def fetched(base: str, target: str, value: str, at: datetime, provider: str = "ecb", late: int = 5) -> RateFetched:
    return RateFetched.for_quote(
        provider_name=provider,
        base_currency=base,
        target_currency=target,
        rate_value=Decimal(value),
        published_at=at,
        fetched_at=at + timedelta(minutes=late),
        fetch_id=uuid.uuid4(),
    )


def revoked(e: RateFetched) -> RateRevoked:
    return RateRevoked.for_rate(
        rate_id=e.rate_id,
        base_currency=e.base_currency,
        target_currency=e.target_currency,
        reason="test",
        revoked_by="test",
        at=T0 + timedelta(days=30),
    )


def distinct_on(engine: Engine, base: str | None) -> list[Rate]:
    """What `latest_per_pair` answered before migration 0009 (the oracle)."""
    t = exchange_rate.c
    query = (
        select(exchange_rate)
        .distinct(t.base_currency, t.target_currency)
        .where(not_revoked(t.id))
        .order_by(t.base_currency, t.target_currency, t.published_at.desc(), t.fetched_at.desc())
    )
    if base is not None:
        query = query.where(t.base_currency == base)
    with engine.connect() as conn:
        return [rate_from_row(row) for row in conn.execute(query).mappings()]


def test_latest_per_pair_answers_what_distinct_on_answered(pg_schema: tuple[Engine, str]) -> None:
    engine, _ = pg_schema
    projector = RateProjector(engine)
    events = [
        fetched("EUR", "USD", "1.08", T0),
        fetched("EUR", "USD", "1.09", T0 + timedelta(days=1)),
        # Same instant, two providers: the later fetch is the newer row.
        fetched("EUR", "USD", "1.10", T0 + timedelta(days=2), provider="a", late=5),
        fetched("EUR", "USD", "1.11", T0 + timedelta(days=2), provider="b", late=9),
        fetched("EUR", "JPY", "160.1", T0),
        fetched("EUR", "JPY", "161.2", T0 + timedelta(days=1)),  # revoked below: falls back to the first
        fetched("EUR", "CHF", "0.95", T0),  # revoked below: the pair has none left
        fetched("USD", "JPY", "150.5", T0),
        fetched("USD", "CAD", "1.35", T0 + timedelta(hours=3)),
        fetched("GBP", "EUR", "1.17", T0),
    ]
    projector.project(events)
    result = projector.project([revoked(events[5]), revoked(events[6])])
    assert not result.refused
    repository = RateRepository(engine)
    for base in (None, "EUR", "USD", "GBP", "CHF", "AAA", "ZZZ"):
        assert repository.latest_per_pair(base) == distinct_on(engine, base), base
    newest = {(r.base_currency, r.target_currency): r.rate_value for r in repository.latest_per_pair()}
    assert newest == {
        ("EUR", "JPY"): Decimal("160.1"),
        ("EUR", "USD"): Decimal("1.11"),
        ("GBP", "EUR"): Decimal("1.17"),
        ("USD", "CAD"): Decimal("1.35"),
        ("USD", "JPY"): Decimal("150.5"),
    }
    assert RateRepository(engine).latest_per_pair("CHF") == []


_INSERT = text(
    "INSERT INTO exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at, "
    "fetched_at, fetch_id, event_id) VALUES (:id, :base, :target, 1.5, :provider, :at, :at, :id, :event)"
)


def _insert(engine: Engine, provider: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            _INSERT,
            {"id": uuid.uuid4(), "base": "EUR", "target": "USD", "provider": provider, "at": at, "event": uuid.uuid4()},
        )


@pytest.mark.parametrize("revision", ["0008", "head"])
def test_the_publication_key_refuses_the_same_rows_before_and_after(
    settings: Settings, pg_schema: tuple[Engine, str], revision: str
) -> None:
    engine, schema = pg_schema
    if revision == "0008":
        command.downgrade(migrate.alembic_config(settings.migration_database_dsn, schema), "0008")
    _insert(engine, "ecb", T0)
    _insert(engine, "other", T0)  # another provider, same instant and pair
    _insert(engine, "ecb", T0 + timedelta(microseconds=1))
    with pytest.raises(IntegrityError) as refused:
        _insert(engine, "ecb", T0)  # another id and event id, the same publication
    assert getattr(refused.value.orig, "pgcode", None) == "23505"
    assert "exchange_rate_publication" in str(refused.value)


def _indexes(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE tablename = 'exchange_rate' AND schemaname = current_schema()"
            )
        )
        return {name: definition.split(" USING ")[1] for name, definition in rows}


def test_downgrade_restores_the_0008_indexes_and_upgrade_merges_them(
    settings: Settings, pg_schema: tuple[Engine, str]
) -> None:
    engine, schema = pg_schema
    merged = {
        "exchange_rate_pkey": "btree (id)",
        "exchange_rate_publication": "btree (base_currency, target_currency, published_at DESC, provider_name)",
    }
    assert _indexes(engine) == merged  # migration 0010 dropped the event_id key
    config = migrate.alembic_config(settings.migration_database_dsn, schema)
    RateProjector(engine).project([fetched("EUR", "USD", "1.08", T0), fetched("EUR", "JPY", "160.1", T0)])
    command.downgrade(config, "0008")
    assert _indexes(engine) == {
        "exchange_rate_pkey": "btree (id)",
        "exchange_rate_event_id_key": "btree (event_id)",
        "exchange_rate_publication": "btree (provider_name, base_currency, target_currency, published_at)",
        "exchange_rate_pair_published": "btree (base_currency, target_currency, published_at DESC, fetched_at DESC)",
    }
    command.upgrade(config, "0009")
    assert _indexes(engine) == {**merged, "exchange_rate_event_id_key": "btree (event_id)"}
    command.upgrade(config, "head")
    assert _indexes(engine) == merged
    assert len(RateRepository(engine).latest_per_pair()) == 2


def test_a_batchs_stored_publications_are_found_through_the_whole_index_key(pg_schema: tuple[Engine, str]) -> None:
    """The conflict lookup of a batch bounds the index scan by all four key columns. With the currencies
    compared as text, only `published_at` and the provider were index conditions: a scan of the whole index
    (~200 ms on the ECB history) on every batch that met a stored row."""
    engine, _ = pg_schema
    events = [Rate(uuid.uuid4(), "EUR", target, Decimal("1.5"), "ecb", T0, T0) for target in ("USD", "GBP")]
    query = _stored_matching(events).compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + query.string, query.params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    conditions = [line for line in plan.splitlines() if "Index Cond" in line and "published_at" in line]
    assert conditions, plan
    assert all("base_currency =" in c and "target_currency =" in c for c in conditions), plan
