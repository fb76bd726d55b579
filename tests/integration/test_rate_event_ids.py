"""Migration 0010 against real PostgreSQL: `exchange_rate.event_id` unique through its derivation, not an index.

The projection refuses a `RateFetched` whose event id is not the one derived from its rate id
(`underived_event_id`, dead-lettered and counted) whether it comes as canonical bytes (`read_row`) or decoded
in full; a redelivery is still a no-op; the migration's downgrade restores the key, and its upgrade refuses to
drop it while a stored row holds another event id.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError

from ces.adapters.postgres import migrate
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.rate_store import RateRepository
from ces.adapters.redis.rate_cache import RateCache
from ces.events.rates import rate_fetched_event_id
from ces.projections.rate_projection import RateEventHandler
from ces.projections.rate_wire import read_row
from ces.settings import Settings
from tests.integration.test_rate_projection import T0, CollectingDeadLetters, as_received, rate_event
from tests.integration.test_rate_reliability import reasons, refused_count


@pytest.fixture
def cache(redis_client: aioredis.Redis, unique: str) -> RateCache:
    return RateCache(redis_client, key_prefix=f"test-{unique}:")


async def test_a_forged_event_id_is_dead_lettered_and_a_redelivery_stays_a_no_op(
    pg_schema: tuple[Engine, str], cache: RateCache
) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    stored = rate_event("USD", "1.0892", T0)
    assert await handler.handle([as_received(stored, 1)]) == 1
    # Canonical bytes (read straight to a row) and a layout only the full decoder takes (a space after the
    # first colon), each with another event id: a new rate's, an existing row's, a random one.
    gbp = rate_event("GBP", "0.85", T0)
    forged = [
        gbp.model_copy(update={"event_id": uuid.uuid4()}).to_json(),
        gbp.model_copy(update={"event_id": stored.event_id}).to_json(),
        gbp.model_copy(update={"event_id": uuid.uuid4()}).to_json().replace(b'"event_id":', b'"event_id": ', 1),
        rate_event("JPY", "161.87", T0).model_copy(update={"event_id": rate_fetched_event_id(uuid.uuid4())}).to_json(),
    ]
    assert read_row(forged[0]) is not None and read_row(forged[2]) is None  # both ways are exercised
    counted = refused_count("underived_event_id")
    batch = [as_received(raw, 2 + i) for i, raw in enumerate(forged)] + [as_received(stored, 6)]
    assert await handler.handle(batch) == 0
    assert reasons(dead) == [b"underived_event_id"] * 4
    assert refused_count("underived_event_id") == counted + 4
    error = dict(dead.sent[1][2])["ces.dlq.error"]
    assert str(stored.event_id).encode() in error and str(gbp.event_id).encode() in error
    assert RateRepository(engine).count() == 1
    assert await cache.get("EUR", "GBP") is None
    cached = await cache.get("EUR", "USD")  # the redelivery offered the stored row
    assert cached is not None and cached.rate_id == stored.rate_id
    # The event with its derived id goes in.
    assert await handler.handle([as_received(gbp, 7)]) == 1
    assert len(dead.sent) == 4


def _keys(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = 'exchange_rate' AND schemaname = current_schema()"
        return set(conn.execute(text(query)).scalars())


_INSERT = text(
    "INSERT INTO exchange_rate (id, base_currency, target_currency, rate_value, provider_name, published_at, "
    "fetched_at, fetch_id, event_id) VALUES (:id, 'EUR', :target, 1.5, 'ecb', :at, :at, :id, :event)"
)


def test_the_downgrade_restores_the_event_id_key_and_the_upgrade_drops_it(
    settings: Settings, pg_schema: tuple[Engine, str]
) -> None:
    engine, schema = pg_schema
    config = migrate.alembic_config(settings.migration_database_dsn, schema)
    assert "exchange_rate_event_id_key" not in _keys(engine)
    # Rows the projection wrote hold their derived event ids: the upgrade's check passes them.
    RateProjector(engine).project([rate_event("USD", "1.08", T0 + timedelta(days=d)) for d in range(3)])
    command.downgrade(config, "0009")
    assert "exchange_rate_event_id_key" in _keys(engine)
    stored = rate_event("USD", "1.08", T0)
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the key refuses a second row's event id
        conn.execute(_INSERT, {"id": uuid.uuid4(), "target": "GBP", "at": T0, "event": stored.event_id})
    command.upgrade(config, "head")
    assert "exchange_rate_event_id_key" not in _keys(engine)
    assert RateRepository(engine).count() == 3


def test_the_upgrade_keeps_the_key_while_a_stored_row_holds_another_event_id(
    settings: Settings, pg_schema: tuple[Engine, str]
) -> None:
    engine, schema = pg_schema
    config = migrate.alembic_config(settings.migration_database_dsn, schema)
    command.downgrade(config, "0009")
    RateProjector(engine).project([rate_event("USD", "1.08", T0)])
    odd = uuid.uuid4()
    with engine.begin() as conn:  # written by other means than the projection
        conn.execute(_INSERT, {"id": odd, "target": "GBP", "at": T0, "event": uuid.uuid4()})
    with pytest.raises(RuntimeError, match=f"rate {odd}"):
        command.upgrade(config, "head")
    assert "exchange_rate_event_id_key" in _keys(engine)
    owner = create_engine(settings.migration_database_dsn, connect_args={"options": f"-csearch_path={schema}"})
    try:
        with owner.connect() as conn:  # the upgrade's transaction was rolled back: still at 0009
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0009"
    finally:
        owner.dispose()
