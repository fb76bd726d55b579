"""The rate projection's refusals and revocations against real PostgreSQL, Redis and Kafka.

Implausible dates and conflicting republications are dead-lettered and reach neither table nor cache;
database errors make `handle` raise with nothing dead-lettered or cached; a revocation falls back to the
previous row everywhere (lookup, cache, history, rebuild), survives redeliveries, and a replay reproduces
it; `ces rates revoke` refuses an unknown id.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ces.adapters.failures import Failure, classify
from ces.adapters.kafka.connection import kafka_kwargs
from ces.adapters.postgres.rate_projector import RateProjector
from ces.adapters.postgres.rate_store import RateRepository, pair_history
from ces.adapters.postgres.replay_swap import verify_target
from ces.adapters.redis.rate_cache import RateCache
from ces.bootstrap import build_replay
from ces.cli.replay_view import LogProgress
from ces.events.rates import RateFetched, RateRevoked, rate_fetched_event_id
from ces.projections.rate_projection import RateEventHandler
from ces.projections.rate_rows import rate_of
from ces.projections.replay import ReplayOptions
from ces.services.cache_rebuild import rebuild_from_database
from ces.services.ports import CacheUnavailable, Received
from ces.settings import Settings
from tests.integration.test_rate_projection import T0, CollectingDeadLetters, as_received, rate_event
from tests.support import drop_schema, produce


@pytest.fixture
def cache(redis_client: aioredis.Redis, unique: str) -> RateCache:
    return RateCache(redis_client, key_prefix=f"test-{unique}:")


def refused_count(reason: str) -> float:
    return REGISTRY.get_sample_value("ces_rate_events_refused_total", {"reason": reason}) or 0.0


def reasons(dead: CollectingDeadLetters) -> list[bytes]:
    return [dict(h)["ces.dlq.reason"] for _, _, h in dead.sent]


def revocation(event: RateFetched, reason: str = "provider correction", by: str = "ops") -> RateRevoked:
    return RateRevoked.for_rate(
        rate_id=event.rate_id,
        base_currency=event.base_currency,
        target_currency=event.target_currency,
        reason=reason,
        revoked_by=by,
        at=T0 + timedelta(days=3),
    )


def table_count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# --- plausibility ------------------------------------------------------------------------------------------


async def test_a_rate_published_after_its_fetch_is_dead_lettered_and_stored_nowhere(
    pg_schema: tuple[Engine, str], cache: RateCache
) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine, max_clock_skew=timedelta(seconds=300)), cache, dead)
    fetched_at = T0
    future = RateFetched.for_quote(
        provider_name="fixer",
        base_currency="EUR",
        target_currency="USD",
        rate_value=Decimal("9.99"),
        published_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC),
        fetched_at=fetched_at,
        fetch_id=uuid.uuid4(),
    )
    within_skew = rate_event("GBP", "0.8571", T0)
    within_skew = within_skew.model_copy(update={"fetched_at": T0 - timedelta(seconds=299)})
    overflowing = future.to_json().replace(b'"9999-12-31T23:00:00Z"', b'"9999-12-31T23:59:59-01:00"')
    assert overflowing != future.to_json()
    batch = [as_received(future, 1), as_received(overflowing, 2), as_received(within_skew, 3)]
    counted = refused_count("implausible_published_at")
    assert await handler.handle(batch) == 1
    assert refused_count("implausible_published_at") == counted + 1
    assert reasons(dead) == [b"implausible_published_at", b"invalid_event"]
    assert [v for _, v, _ in dead.sent] == [future.to_json(), overflowing]
    assert RateRepository(engine).latest("EUR", "USD") is None
    assert await cache.get("EUR", "USD") is None
    assert await cache.get("EUR", "GBP") is not None  # the rest of the batch went on


# --- one id, one value ------------------------------------------------------------------------------------


async def test_a_conflicting_republication_is_dead_lettered_and_the_cache_keeps_postgres_value(
    pg_schema: tuple[Engine, str], cache: RateCache, redis_client: aioredis.Redis
) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    first = rate_event("USD", "1.0892", T0)
    assert await handler.handle([as_received(first, 1)]) == 1
    changed = rate_event("USD", "1.1111", T0)  # same provider, pair and publication time: same rate_id
    assert changed.rate_id == first.rate_id
    # Cache lost in between (Redis flushed): a conflicting event must not be what refills it.
    await redis_client.delete(cache.key("EUR", "USD"))
    counted = refused_count("conflicting_republication")
    assert await handler.handle([as_received(changed, 2)]) == 0
    assert reasons(dead) == [b"conflicting_republication"]
    assert refused_count("conflicting_republication") == counted + 1
    assert b"1.0892" in dict(dead.sent[0][2])["ces.dlq.error"]
    assert await cache.get("EUR", "USD") is None
    # The same value again, written with other digits, is an idempotent no-op that feeds the cache
    # PostgreSQL's row, digits included.
    same = rate_event("USD", "1.08920", T0)
    assert await handler.handle([as_received(same, 3)]) == 0
    assert len(dead.sent) == 1
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == first.rate_id
    assert str(cached.rate_value) == "1.0892"
    latest = RateRepository(engine).latest("EUR", "USD")
    assert latest is not None and latest.rate_value == Decimal("1.0892")
    assert RateRepository(engine).count() == 1


async def test_a_conflict_inside_one_batch_keeps_the_first(pg_schema: tuple[Engine, str], cache: RateCache) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    first, second = rate_event("JPY", "161.87", T0), rate_event("JPY", "170.00", T0)
    assert await handler.handle([as_received(first, 1), as_received(second, 2)]) == 1
    assert reasons(dead) == [b"conflicting_republication"]
    assert dict(dead.sent[0][2])["ces.dlq.source.offset"] == b"2"
    cached = await cache.get("EUR", "JPY")
    assert cached is not None and cached.rate_value == Decimal("161.87")


# --- database errors: raise, never dead-letter --------------------------------------------------------------


@pytest.fixture
def read_only_engine(settings: Settings, pg_schema: tuple[Engine, str]) -> Iterator[Engine]:
    _, schema = pg_schema
    engine = create_engine(
        settings.database_dsn,
        connect_args={"options": f"-csearch_path={schema} -cdefault_transaction_read_only=on"},
    )
    yield engine
    engine.dispose()


async def test_a_read_only_database_makes_handle_raise_with_nothing_dead_lettered_or_cached(
    read_only_engine: Engine, cache: RateCache
) -> None:
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(read_only_engine), cache, dead)
    with pytest.raises(DBAPIError, match="read-only transaction"):
        await handler.handle([as_received(b"{not json", 1), as_received(rate_event("USD", "1.0892", T0), 2)])
    assert dead.sent == []  # not even the undecodable one: the whole batch will be retried
    assert await cache.get("EUR", "USD") is None


async def test_permission_denied_makes_handle_raise(
    settings: Settings, pg_schema: tuple[Engine, str], owner_engine: Engine, cache: RateCache
) -> None:
    engine, _ = pg_schema
    with owner_engine.begin() as conn:
        conn.execute(text(f'REVOKE INSERT ON exchange_rate FROM "{settings.database_app_role}"'))
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    with pytest.raises(DBAPIError, match="permission denied"):
        await handler.handle([as_received(rate_event("USD", "1.0892", T0))])
    assert dead.sent == []
    assert await cache.get("EUR", "USD") is None


async def test_a_missing_table_makes_handle_raise(settings: Settings, unique: str, cache: RateCache) -> None:
    schema = f"test_{unique}_empty"
    admin = create_engine(settings.migration_database_dsn)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    engine = create_engine(settings.database_dsn, connect_args={"options": f"-csearch_path={schema}"})
    try:
        dead = CollectingDeadLetters()
        handler = RateEventHandler(RateProjector(engine), cache, dead)
        with pytest.raises(DBAPIError, match="exchange_rate"):
            await handler.handle([as_received(rate_event("USD", "1.0892", T0))])
        assert dead.sent == []
        assert await cache.get("EUR", "USD") is None
    finally:
        engine.dispose()
        drop_schema(settings.migration_database_dsn, schema)


# --- revocation ---------------------------------------------------------------------------------------------


async def test_a_revoked_rate_falls_back_to_the_previous_row_and_redelivery_does_not_restore_it(
    pg_schema: tuple[Engine, str], cache: RateCache
) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    old, new = rate_event("USD", "1.0800", T0), rate_event("USD", "1.0900", T0 + timedelta(days=1))
    await handler.handle([as_received(old, 1), as_received(new, 2)])
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == new.rate_id

    await handler.handle([as_received(revocation(new, "fat finger at the provider", "alice"), 3)])
    repo = RateRepository(engine)
    assert (latest := repo.latest("EUR", "USD")) is not None and latest.rate_id == old.rate_id
    assert [r.rate_id for r in repo.latest_per_pair()] == [old.rate_id]
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == old.rate_id and cached.rate_value == Decimal("1.0800")
    found = repo.find(new.rate_id)
    assert found is not None and found[1] is not None
    assert (found[1].reason, found[1].revoked_by) == ("fat finger at the provider", "alice")
    history = pair_history(engine, "EUR", "USD", "EUR", start=T0, end=T0 + timedelta(days=5), after=None, limit=10)
    assert [h.rate_ids for h in history] == [(old.rate_id,)]

    # Redelivered: the rate, then the revocation again (another reason: the first one stands).
    assert await handler.handle([as_received(new, 2), as_received(revocation(new, "again", "bob"), 3)]) == 0
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == old.rate_id
    assert table_count(engine, "exchange_rate_revocation") == 1
    assert repo.find(new.rate_id)[1].revoked_by == "alice"  # type: ignore[index,union-attr]
    assert dead.sent == []
    assert repo.count() == 2  # nothing deleted

    # Revoking the last row of a pair empties it everywhere.
    await handler.handle([as_received(revocation(old), 4)])
    assert repo.latest("EUR", "USD") is None
    assert await cache.get("EUR", "USD") is None


async def test_a_revocation_redis_cannot_take_fails_the_batch_until_it_can(
    pg_schema: tuple[Engine, str], cache: RateCache, unique: str
) -> None:
    """Redis down when a revocation is projected: the batch raises (transient, retried by the consumer)
    instead of leaving the withdrawn rate in the cache; once Redis answers, the same batch lands it."""
    engine, _ = pg_schema
    handler = RateEventHandler(RateProjector(engine), cache, CollectingDeadLetters())
    old, new = rate_event("USD", "1.0800", T0), rate_event("USD", "1.0900", T0 + timedelta(days=1))
    await handler.handle([as_received(old, 1), as_received(new, 2)])

    dead_redis = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    unreachable = RateEventHandler(
        RateProjector(engine), RateCache(dead_redis, key_prefix=cache.key_prefix), handler.dead_letters
    )
    batch = [as_received(revocation(new), 3)]
    with pytest.raises(CacheUnavailable) as info:
        await unreachable.handle(batch)
    await dead_redis.aclose()
    assert isinstance(info.value.__cause__, RedisConnectionError)
    assert classify(info.value) is Failure.TRANSIENT
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == new.rate_id  # not yet: the batch will be retried

    await handler.handle(batch)  # the retry, with Redis back
    cached = await cache.get("EUR", "USD")
    assert cached is not None and cached.rate_id == old.rate_id


async def test_revoking_a_rate_that_is_not_the_cached_one_leaves_the_cache(
    pg_schema: tuple[Engine, str], cache: RateCache
) -> None:
    engine, _ = pg_schema
    handler = RateEventHandler(RateProjector(engine), cache, CollectingDeadLetters())
    old, new = rate_event("CHF", "0.95", T0), rate_event("CHF", "0.96", T0 + timedelta(days=1))
    await handler.handle([as_received(old), as_received(new)])
    await handler.handle([as_received(revocation(old))])
    cached = await cache.get("EUR", "CHF")
    assert cached is not None and cached.rate_id == new.rate_id
    # The newer one revoked too: the pair empties, and no writer can bring either back.
    assert await cache.revoke(rate_of(new), None)
    assert await cache.put_many([rate_of(old), rate_of(new)]) == 0
    assert await cache.get("EUR", "CHF") is None


async def test_a_revocation_of_an_unknown_rate_is_dead_lettered(
    pg_schema: tuple[Engine, str], cache: RateCache
) -> None:
    engine, _ = pg_schema
    dead = CollectingDeadLetters()
    handler = RateEventHandler(RateProjector(engine), cache, dead)
    await handler.handle([as_received(revocation(rate_event("USD", "1.0892", T0)))])
    assert reasons(dead) == [b"unknown_rate"]
    assert table_count(engine, "exchange_rate_revocation") == 0


async def test_cache_rebuild_skips_revoked_rows_and_repairs_a_stale_cache(
    pg_schema: tuple[Engine, str], redis_client: aioredis.Redis, unique: str
) -> None:
    engine, _ = pg_schema
    projector = RateProjector(engine)
    old, new = rate_event("USD", "1.0800", T0), rate_event("USD", "1.0900", T0 + timedelta(days=1))
    result = projector.project([old, new])
    stale = RateCache(redis_client, key_prefix=f"stale-{unique}:")
    await stale.put_many(result.current)  # cached before the revocation; Redis then missed the revocation
    projector.project([revocation(new)])
    for cache in (stale, RateCache(redis_client, key_prefix=f"fresh-{unique}:")):
        assert await rebuild_from_database(RateRepository(engine), cache) == 1
        cached = await cache.get("EUR", "USD")
        assert cached is not None and cached.rate_id == old.rate_id


def test_revocations_are_insert_only_in_the_database(pg_schema: tuple[Engine, str], owner_engine: Engine) -> None:
    engine, _ = pg_schema
    rate = rate_event("USD", "1.0892", T0)
    RateProjector(engine).project([rate, revocation(rate)])
    for statement in ("UPDATE exchange_rate_revocation SET reason = 'x'", "DELETE FROM exchange_rate_revocation"):
        with pytest.raises(DBAPIError, match="permission denied"), engine.begin() as conn:
            conn.execute(text(statement))
        with pytest.raises(DBAPIError, match="insert-only"), owner_engine.begin() as conn:
            conn.execute(text(statement))
    assert table_count(engine, "exchange_rate_revocation") == 1


# --- replay -------------------------------------------------------------------------------------------------


async def test_replay_reproduces_revocations_and_verify_compares_them(
    settings: Settings, pg_schema: tuple[Engine, str], unique: str
) -> None:
    engine, live_schema = pg_schema
    prefix = f"test-{unique}-"
    topic = prefix + "rates-fetched"
    admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
    await admin.start()
    target = f"test_{unique}_replay"
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        old, new = rate_event("USD", "1.0800", T0), rate_event("USD", "1.0900", T0 + timedelta(days=1))
        conflicting = rate_event("USD", "2.0000", T0)
        events: list[RateFetched | RateRevoked] = [old, new, conflicting, revocation(new)]
        await produce(settings.kafka_bootstrap, topic, [(e.key(), e.to_json()) for e in events])
        live = RateProjector(engine).project(events)  # what the live worker did with the same events
        assert [r.reason for r in live.refused] == ["conflicting_republication"]

        replay_settings = settings.model_copy(update={"topic_prefix": prefix})
        replay = build_replay(replay_settings, ReplayOptions("rates", target, live_schema), LogProgress())
        report = await asyncio.to_thread(replay.run)  # it runs its own event loop
        assert report.complete and report.phases[0].refused == 1
        assert report.rows == {"exchange_rate": 2, "exchange_rate_revocation": 1}
        results = verify_target(settings.migration_database_dsn, live_schema, target, "rates", max_diffs=5)
        assert [(r.table, r.ok) for r in results] == [("exchange_rate", True), ("exchange_rate_revocation", True)]

        # A revocation present on one side only is a difference verify reports.
        replayed = create_engine(settings.database_dsn, connect_args={"options": f"-csearch_path={target}"})
        try:
            RateProjector(replayed).project([revocation(old)])
        finally:
            replayed.dispose()
        results = verify_target(settings.migration_database_dsn, live_schema, target, "rates", max_diffs=5)
        revocations = next(r for r in results if r.table == "exchange_rate_revocation")
        assert not revocations.ok and revocations.diffs[0].kind == "missing in live"
    finally:
        await admin.delete_topics([topic])
        await admin.close()
        drop_schema(settings.migration_database_dsn, target)


# --- the CLI ------------------------------------------------------------------------------------------------


def test_cli_revoke_refuses_an_unknown_id(settings: Settings, pg_schema: tuple[Engine, str], unique: str) -> None:
    _, schema = pg_schema
    url = make_url(settings.database_dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    env = {
        **os.environ,
        "CES_DATABASE_URL": url.render_as_string(hide_password=False),
        "CES_TOPIC_PREFIX": f"test-{unique}-",
    }
    unknown = uuid.uuid4()
    done = subprocess.run(
        [sys.executable, "-m", "ces", "rates", "revoke", str(unknown), "--reason", "test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"no rate {unknown}" in done.stderr


async def test_cli_revoke_publishes_a_revocation_the_projection_applies(
    settings: Settings, pg_schema: tuple[Engine, str], cache: RateCache, unique: str
) -> None:
    engine, schema = pg_schema
    handler = RateEventHandler(RateProjector(engine), cache, CollectingDeadLetters())
    old, new = rate_event("USD", "1.0800", T0), rate_event("USD", "1.0900", T0 + timedelta(days=1))
    await handler.handle([as_received(old), as_received(new)])
    url = make_url(settings.database_dsn).update_query_dict({"options": f"-csearch_path={schema}"})
    prefix = f"test-{unique}-"
    env = {**os.environ, "CES_DATABASE_URL": url.render_as_string(hide_password=False), "CES_TOPIC_PREFIX": prefix}
    command = [sys.executable, "-m", "ces", "rates", "revoke", str(new.rate_id), "--reason", "wrong digits"]
    try:
        done = await asyncio.to_thread(
            subprocess.run, [*command, "--by", "carol"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        consumer = AIOKafkaConsumer(
            prefix + "rates-fetched", **kafka_kwargs(settings.kafka_bootstrap), auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        assert record.key == b"EUR:USD"
        await handler.handle([Received(record.topic, record.partition, record.offset, record.key, record.value)])
        found = RateRepository(engine).find(new.rate_id)
        assert found is not None and found[1] is not None
        assert (found[1].reason, found[1].revoked_by) == ("wrong digits", "carol")
        cached = await cache.get("EUR", "USD")
        assert cached is not None and cached.rate_id == old.rate_id
        again = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "already revoked" in again.stdout and "carol" in again.stdout
    finally:
        admin = AIOKafkaAdminClient(**kafka_kwargs(settings.kafka_bootstrap))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            await admin.delete_topics([t for t in existing if t.startswith(prefix)])
        finally:
            await admin.close()


def test_a_publication_stored_under_another_id_is_a_conflict_and_another_rows_event_id_is_refused(
    pg_schema: tuple[Engine, str],
) -> None:
    engine, _ = pg_schema
    projector = RateProjector(engine)
    stored = rate_event("USD", "1.0892", T0)
    projector.project([stored])
    new_id = uuid.uuid4()
    forged_id = stored.model_copy(update={"rate_id": new_id, "event_id": rate_fetched_event_id(new_id)})
    reused_event = rate_event("GBP", "0.85", T0).model_copy(update={"event_id": stored.event_id})
    result = projector.project([forged_id, reused_event, stored])
    assert [(r.index, r.reason) for r in result.refused] == [
        (0, "conflicting_republication"),  # the same publication under another id
        (1, "underived_event_id"),  # another row's event id: never its own rate's
    ]
    assert str(stored.event_id) in result.refused[1].detail
    assert [r.rate_id for r in result.current] == [stored.rate_id]  # the same event again is a no-op
    assert RateRepository(engine).count() == 1
